#include "volume/segment_format.h"

#include <catch2/catch.hpp>

#include "util/buffer_pool.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace portal::volume {
namespace {

SegmentFooter Sample(uint64_t blocks) {
  SegmentFooter f;
  f.segment_id = 42;
  f.epoch = 3;
  f.first_seq = 100;
  f.last_seq = 200;
  f.block_size = 4096;
  f.blocks_per_chunk = 16;
  f.data_blocks = blocks;
  const uint64_t a = (blocks + 1) / 2, b = blocks - a;
  f.extents.push_back({{10, 10 + a, lsm::Loc::Data(42, 0)}, false, {}});
  f.extents.push_back({{10 + a, 1000, lsm::Loc::Hole()}, false, {}});
  if (b > 0) {
    f.extents.push_back({{5000, 5000 + b, lsm::Loc::Data(42, a)}, true, lsm::Loc::Data(7, 99)});
  }
  f.extents.push_back({{1ull << 50, (1ull << 50) + 3, lsm::Loc::Zero()}, false, {}});
  return f;
}

std::string Data(uint64_t blocks, bool compressible) {
  std::string d(blocks * 4096, '\0');
  uint64_t x = 12345;
  for (size_t i = 0; i < d.size(); ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = compressible ? static_cast<char>('a' + (i / 4096) % 7) : static_cast<char>(x >> 56);
  }
  return d;
}

struct Encoded {
  std::string bytes;
  uint64_t footer_checksum = 0;
};

Encoded Encode(SegmentFooter* f, objstore::Rope data, bool compress,
               std::vector<std::optional<uint64_t>> sums = {}) {
  EncodedSegment e = EncodeSegment(f, SegmentContents{std::move(data), std::move(sums)},
                                   EncodeOptions{compress, nullptr});
  return Encoded{std::move(e.bytes).Flatten(), e.footer_checksum};
}

Encoded Encode(SegmentFooter* f, std::string_view data, bool compress) {
  return Encode(f, objstore::Rope(std::string(data)), compress);
}

TEST_CASE("a segment's bytes do not depend on the pieces its data comes in",
          "[volume][format]") {
  // One string; pieces cut at odd places (chunks span pieces); pieces with some chunk
  // checksums given (as a write buffer gives those of adopted writes).
  for (bool compress : {false, true}) {
    for (uint64_t blocks : {1ull, 16ull, 17ull, 100ull}) {
      INFO("compress " << compress << " blocks " << blocks);
      const std::string data = Data(blocks, false);
      SegmentFooter f1 = Sample(blocks);
      const Encoded a = Encode(&f1, data, compress);
      objstore::Rope pieces;
      for (size_t at = 0, n = 1; at < data.size(); at += n, n = n * 7 + 4093) {
        pieces.Append(std::make_shared<const std::string>(data.substr(at, n)));
      }
      REQUIRE(pieces.pieces().size() > 1);
      SegmentFooter f2 = Sample(blocks);
      const Encoded b = Encode(&f2, pieces, compress);
      std::vector<std::optional<uint64_t>> sums;
      const size_t chunk_bytes = size_t{f2.blocks_per_chunk} * f2.block_size;
      for (size_t pos = 0; pos < data.size(); pos += 2 * chunk_bytes) {
        sums.push_back(Checksum64(std::string_view(data).substr(pos, chunk_bytes)));
        sums.push_back(std::nullopt);
      }
      SegmentFooter f3 = Sample(blocks);
      const Encoded c = Encode(&f3, pieces, compress, sums);
      CHECK(a.bytes == b.bytes);
      CHECK(a.bytes == c.bytes);
      CHECK(a.footer_checksum == b.footer_checksum);
      CHECK(a.footer_checksum == c.footer_checksum);
      CHECK(f1.chunks.size() == f2.chunks.size());
    }
  }
}

TEST_CASE("raw segments keep the data's pieces, compressed ones are one string",
          "[volume][format]") {
  const std::string data = Data(40, true);
  auto owner = std::make_shared<const std::string>(data);
  objstore::Rope pieces;
  pieces.Append(owner, std::string_view(*owner).substr(0, 5000));
  pieces.Append(std::make_shared<const std::string>(data.substr(5000)));
  SegmentFooter f = Sample(40);
  EncodedSegment raw = EncodeSegment(&f, SegmentContents{pieces, {}}, {});
  CHECK_FALSE(raw.bytes.is_one_string());
  CHECK(raw.bytes.pieces().front().owner == owner);  // the caller's memory, not a copy
  CHECK(raw.bytes.pieces().size() == 3);             // + the footer
  EncodedSegment lz4 = EncodeSegment(&f, SegmentContents{pieces, {}}, {true, nullptr});
  CHECK(lz4.bytes.is_one_string());
  // Data in one string: the footer is appended to it, still one string.
  EncodedSegment flat = EncodeSegment(&f, SegmentContents{objstore::Rope(data), {}}, {});
  CHECK(flat.bytes.is_one_string());
  CHECK(std::move(flat.bytes).Flatten() == raw.bytes.Flatten());
}

TEST_CASE("compressed segments of any size reuse the one string the last PUT gave back",
          "[volume][format]") {
  // The uploader asks for a full segment's capacity every time: segments sealed by the
  // flush interval or a FLUSH vary in size, and with strings of their own sizes each
  // missed the pool (fresh pages faulted in by the encoder's copy).
  BufferPool pool;
  const size_t full = EncodedCapacity(64 << 20);
  const char* storage = nullptr;
  // Compressible data (all of it in the string); 160 KiB to 7.4 MiB of blocks.
  for (uint64_t blocks : {700, 40, 1900, 300, 1200}) {
    SegmentFooter f = Sample(blocks);
    EncodedSegment e = EncodeSegment(&f, SegmentContents{objstore::Rope(Data(blocks, true)), {}},
                                     {true, &pool, full});
    std::string s = std::move(e.bytes).Flatten();
    CHECK(s.capacity() >= full);
    if (storage) CHECK(s.data() == storage);
    storage = s.data();
    pool.Give(std::move(s));  // as a store does after its PUT
  }
  CHECK(pool.hits() == 4);
  CHECK(pool.misses() == 1);
  // Without a floor, each size asks for its own string: the pool serves none of them.
  BufferPool sized;
  for (uint64_t blocks : {700, 40, 1900, 300, 1200}) {
    SegmentFooter f = Sample(blocks);
    EncodedSegment e = EncodeSegment(&f, SegmentContents{objstore::Rope(Data(blocks, true)), {}},
                                     {true, &sized});
    sized.Give(std::move(e.bytes).Flatten());
  }
  CHECK(sized.hits() == 0);
}

TEST_CASE("compressed segments reference the chunks LZ4 does not shrink, never copy them",
          "[volume][format]") {
  // Incompressible data in pieces (a write buffer's slabs): the object is those pieces
  // plus one pooled string (footer, compressed chunks), the same bytes as from one string.
  const std::string data = Data(64, false) + Data(32, true) + Data(64, false);  // 640 KiB
  auto slab1 = std::make_shared<const std::string>(data.substr(0, 256 << 10));
  auto slab2 = std::make_shared<const std::string>(data.substr(256 << 10));
  objstore::Rope pieces;
  pieces.Append(slab1);
  pieces.Append(slab2);
  BufferPool pool;
  SegmentFooter f = Sample(160);
  EncodedSegment e = EncodeSegment(&f, SegmentContents{pieces, {}}, {true, &pool, 2 << 20});
  CHECK_FALSE(e.bytes.is_one_string());
  CHECK(e.bytes.pieces().front().owner == slab1);  // not a copy
  CHECK(e.bytes.pieces().front().bytes.data() == slab1->data());
  size_t referenced = 0;
  for (const auto& p : e.bytes.pieces()) {
    if (p.owner == slab1 || p.owner == slab2) referenced += p.bytes.size();
  }
  CHECK(referenced == (256u << 10) + (256u << 10));  // the 8 raw chunks, in 2 runs
  size_t lz4 = 0;
  for (const ChunkInfo& c : f.chunks) lz4 += c.codec == ChunkCodec::kLz4;
  CHECK(lz4 == 2);
  SegmentFooter g = Sample(160);
  Encoded flat = Encode(&g, data, true);
  CHECK(e.bytes.Flatten() == flat.bytes);
  CHECK(e.footer_checksum == flat.footer_checksum);
  // The pooled string goes back to the pool with the last rope holding it (after a PUT).
  CHECK(pool.pooled_bytes() == 0);
  e.bytes = objstore::Rope();
  CHECK(pool.pooled_bytes() >= (2u << 20));
}

TEST_CASE("segments round-trip, compressed and raw, and chunks verify", "[volume][format]") {
  for (bool compressible : {true, false}) {
    for (uint64_t blocks : {1ull, 16ull, 17ull, 100ull}) {
      SegmentFooter f = Sample(blocks);
      std::string data = Data(blocks, compressible);
      Encoded enc = Encode(&f, data, true);
      uint64_t sum = 0;
      auto dec = DecodeSegmentFooter(enc.bytes, enc.bytes.size(), "seg/42", &sum);
      REQUIRE(dec.ok());
      CHECK(sum == enc.footer_checksum);
      CHECK(dec->segment_id == 42);
      CHECK(dec->epoch == 3);
      CHECK(dec->extents == f.extents);
      CHECK(dec->chunks.size() == (blocks + 15) / 16);
      std::string back;
      for (const ChunkInfo& c : dec->chunks) {
        CHECK((c.codec == ChunkCodec::kLz4) == compressible);
        auto raw = DecodeChunk(std::string_view(enc.bytes).substr(c.offset, c.stored_len), c,
                               4096, "seg/42");
        REQUIRE(raw.ok());
        back += *raw;
      }
      CHECK(back == data);
    }
  }
}

TEST_CASE("a fence segment has no chunks and no extents", "[volume][format]") {
  SegmentFooter f;
  f.segment_id = 9;
  f.epoch = 5;
  Encoded enc = Encode(&f, "", true);
  auto dec = DecodeSegmentFooter(enc.bytes, enc.bytes.size(), "seg/9");
  REQUIRE(dec.ok());
  CHECK(dec->is_fence());
  CHECK(dec->epoch == 5);
}

TEST_CASE("a fence's resume: stored only above id + 1, absent reads as id + 1",
          "[volume][format]") {
  SegmentFooter f;
  f.segment_id = 9;
  f.epoch = 5;
  f.durable_through = 8;
  Encoded plain = Encode(&f, "", true);  // resume unset: the bytes of a fence before windows
  auto dec = DecodeSegmentFooter(plain.bytes, plain.bytes.size(), "seg/9");
  REQUIRE(dec.ok());
  CHECK(dec->resume == 10);
  f.resume = 10;
  CHECK(Encode(&f, "", true).bytes == plain.bytes);
  f.resume = 17;
  Encoded windowed = Encode(&f, "", true);
  CHECK(windowed.bytes.size() == plain.bytes.size() + 1);
  dec = DecodeSegmentFooter(windowed.bytes, windowed.bytes.size(), "seg/9");
  REQUIRE(dec.ok());
  CHECK(dec->is_fence());
  CHECK(dec->resume == 17);
  CHECK(dec->durable_through == 8);
  f.resume = 9 + kMaxFenceWindow + 1;  // past any window a manifest allows
  Encoded far = Encode(&f, "", true);
  CHECK(DecodeSegmentFooter(far.bytes, far.bytes.size(), "seg/9").status().IsCorruption());
}

TEST_CASE("every corrupted byte of a segment is detected, never crashes", "[volume][format]") {
  SegmentFooter f = Sample(20);
  std::string data = Data(20, true);
  Encoded enc = Encode(&f, data, true);
  for (size_t i = 0; i < enc.bytes.size(); ++i) {
    std::string bad = enc.bytes;
    bad[i] ^= 0x41;
    auto dec = DecodeSegmentFooter(bad, bad.size(), "seg/42");
    if (!dec.ok()) {
      CHECK(dec.status().IsCorruption());
      CHECK(dec.status().message().find("seg/42") != std::string::npos);
      continue;
    }
    // The footer survived, so the byte was in the data area: its chunk must fail.
    bool caught = false;
    for (const ChunkInfo& c : dec->chunks) {
      auto raw = DecodeChunk(std::string_view(bad).substr(c.offset, c.stored_len), c, 4096,
                             "seg/42");
      if (!raw.ok()) {
        CHECK(raw.status().IsCorruption());
        caught = true;
      }
    }
    INFO("byte " << i);
    CHECK(caught);
  }
  // Truncations.
  for (size_t len = 0; len < enc.bytes.size(); len += 7) {
    auto dec = DecodeSegmentFooter(enc.bytes.substr(0, len), len, "seg/42");
    CHECK_FALSE(dec.ok());
  }
}

TEST_CASE("an LZ4 chunk claiming more than LZ4 can expand is Corruption before any allocation",
          "[volume][format]") {
  // A footer with valid checksums whose one LZ4 chunk of 16 stored bytes claims 4096
  // blocks of 1 MiB: decoding it would allocate 4 GiB. LZ4 expands at most ~255x.
  const std::string area(16, 'x');
  std::string footer;
  for (uint64_t v : {2, 5, 1, 1, 1, 1 << 20, 4096, 4096, 1}) PutVarint64(&footer, v);
  PutVarint64(&footer, 0);     // offset
  PutVarint64(&footer, 16);    // stored_len
  PutVarint64(&footer, 4096);  // raw_blocks
  footer.push_back(static_cast<char>(ChunkCodec::kLz4));
  PutFixed64(&footer, 0);   // checksum of the decoded bytes
  PutVarint64(&footer, 0);  // extents
  PutVarint64(&footer, 4);  // durable_through
  std::string object = area + footer;
  PutFixed32(&object, static_cast<uint32_t>(footer.size()));
  PutFixed64(&object, Checksum64(footer));
  PutFixed64(&object, 0x3130474553444250ULL);  // "PBDSEG01"
  auto f = DecodeSegmentFooter(object, object.size(), "seg/5");
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().IsCorruption());
  CHECK_THAT(f.status().ToString(), Catch::Contains("LZ4"));
}

}  // namespace
}  // namespace portal::volume
