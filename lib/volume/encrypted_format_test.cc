// Encrypted segments and map SSTs: the codecs of segment_format.cc and lsm/sst_format.cc
// with a key (docs/volume.md "Encryption").
#include <catch2/catch.hpp>

#include "crypto/aead.h"
#include "lsm/sst_format.h"
#include "volume/segment_format.h"

namespace portal::volume {
namespace {

std::shared_ptr<const crypto::Keyring> Ring(char fill) {
  auto r = crypto::Keyring::FromKeys({std::string(crypto::kKeyBytes, fill)});
  REQUIRE(r.ok());
  return *r;
}

// 40 blocks (3 chunks of 16): text that compresses, and a marker that must not show.
std::string Plain() {
  std::string d;
  while (d.size() < 40 * 4096) d += "SECRET-PLAINTEXT-PATTERN block data ";
  d.resize(40 * 4096);
  return d;
}

SegmentFooter Footer() {
  SegmentFooter f;
  f.segment_id = 9;
  f.epoch = 2;
  f.first_seq = 1;
  f.last_seq = 5;
  f.data_blocks = 40;
  f.durable_through = 8;
  f.extents.push_back({{777000, 777040, lsm::Loc::Data(9, 0)}, false, {}});
  return f;
}

struct Stored {
  std::string bytes;
  uint64_t sum = 0;
};

Stored Encode(const crypto::Keyring& ring, bool compress) {
  SegmentFooter f = Footer();
  EncodedSegment e =
      EncodeSegment(&f, SegmentContents{objstore::Rope(Plain()), {}},
                    EncodeOptions{compress, nullptr}, ring.NewObjectKey(crypto::Purpose::kSegment));
  return {std::move(e.bytes).Flatten(), e.footer_checksum};
}

// Every chunk decoded alone, as FetchChunks does from a ranged GET.
Result<std::string> DecodeAll(const std::string& obj, const crypto::Keyring* ring) {
  uint64_t sum = 0;
  ASSIGN_OR_RETURN(SegmentFooter f, DecodeSegmentFooter(obj, obj.size(), "seg/9", &sum, ring));
  std::string out;
  for (size_t i = 0; i < f.chunks.size(); ++i) {
    const ChunkInfo& c = f.chunks[i];
    ASSIGN_OR_RETURN(std::string raw,
                     DecodeChunk(std::string_view(obj).substr(c.offset, c.stored_len), c,
                                 f.block_size, "seg/9", f.key.get()));
    out += raw;
  }
  return out;
}

TEST_CASE("encrypted segment: chunks decrypt one by one, no plaintext shows",
          "[volume][format][crypto]") {
  auto ring = Ring('k');
  for (bool compress : {false, true}) {
    Stored s = Encode(*ring, compress);
    CHECK(s.bytes.find("SECRET-PLAINTEXT") == std::string::npos);
    CHECK(s.bytes.find("PBDSEGE1") != std::string::npos);  // the trailer's magic
    auto all = DecodeAll(s.bytes, ring.get());
    REQUIRE(all.ok());
    CHECK(*all == Plain());
    uint64_t sum = 0;
    auto f = DecodeSegmentFooter(s.bytes, s.bytes.size(), "seg/9", &sum, ring.get());
    REQUIRE(f.ok());
    CHECK(sum == s.sum);
    CHECK(f->extents == Footer().extents);  // the footer's block addresses round-trip
    if (compress) CHECK(s.bytes.size() < Plain().size() / 4);  // compressed before sealing
  }
}

TEST_CASE("encrypted segment: without the key or under another it names the key id",
          "[volume][format][crypto]") {
  auto ring = Ring('k');
  Stored s = Encode(*ring, true);
  auto none = DecodeSegmentFooter(s.bytes, s.bytes.size(), "seg/9", nullptr, nullptr);
  CHECK(none.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(none.status().message(), Catch::Contains(ring->key_id()) && Catch::Contains("seg/9"));
  auto other = Ring('o');
  auto wrong = DecodeSegmentFooter(s.bytes, s.bytes.size(), "seg/9", nullptr, other.get());
  CHECK(wrong.status().code() == Status::Code::kInvalidArgument);
  // An unencrypted segment in an encrypted volume is damage (or tampering).
  SegmentFooter f = Footer();
  std::string plain =
      EncodeSegment(&f, SegmentContents{objstore::Rope(Plain()), {}}, EncodeOptions{true, nullptr})
          .bytes.Flatten();
  CHECK(DecodeSegmentFooter(plain, plain.size(), "seg/9", nullptr, ring.get())
            .status()
            .IsCorruption());
}

TEST_CASE("encrypted segment: a flipped bit anywhere is Corruption naming it",
          "[volume][format][crypto]") {
  auto ring = Ring('k');
  Stored s = Encode(*ring, true);
  // Every 7th byte (each region: chunks, tags, header, sealed footer, trailer), a bit each.
  for (size_t at = 0; at < s.bytes.size(); at += 7) {
    std::string bad = s.bytes;
    bad[at] = static_cast<char>(bad[at] ^ (1 << (at % 8)));
    auto r = DecodeAll(bad, ring.get());
    INFO("byte " << at << " of " << bad.size());
    REQUIRE(r.status().IsCorruption());
    CHECK_THAT(r.status().message(), Catch::Contains("seg/9"));
  }
}

TEST_CASE("encrypted segment: a re-encode with the same object key is the same object",
          "[volume][format][crypto]") {
  // The uploader re-encodes on a retry: same key, same footer and data, same bytes (so a
  // nonce never meets a second plaintext, and the lost-ack read-back matches).
  auto ring = Ring('k');
  auto key = ring->NewObjectKey(crypto::Purpose::kSegment);
  SegmentFooter a = Footer(), b = Footer();
  auto ea = EncodeSegment(&a, SegmentContents{objstore::Rope(Plain()), {}}, {true, nullptr}, key);
  auto eb = EncodeSegment(&b, SegmentContents{objstore::Rope(Plain()), {}}, {true, nullptr}, key);
  CHECK(ea.footer_checksum == eb.footer_checksum);
  CHECK(std::move(ea.bytes).Flatten() == std::move(eb.bytes).Flatten());
  // Another segment draws another key: same data, different bytes everywhere.
  Stored other = Encode(*ring, true);
  CHECK(other.sum != ea.footer_checksum);
}

TEST_CASE("encrypted map SST: blocks and index sealed, each block opens alone",
          "[lsm][format][crypto]") {
  auto ring = Ring('k');
  lsm::SstBuilder b(256, ring.get());
  std::vector<lsm::Extent> in;
  for (uint64_t i = 0; i < 200; ++i) {
    in.push_back({123456789 + i * 10, 123456789 + i * 10 + 5, lsm::Loc::Data(31337, i * 5)});
  }
  for (const auto& e : in) b.Add(e);
  lsm::SstIndex written;
  const std::string obj = b.Finish(&written);
  REQUIRE(written.key);
  CHECK(obj.find("PBDSSTE1") != std::string::npos);
  auto idx = lsm::DecodeSstIndex(obj, obj.size(), "map/1-1.sst", ring.get());
  REQUIRE(idx.ok());
  REQUIRE(idx->blocks.size() > 1);
  std::vector<lsm::Extent> out;
  for (const auto& entry : idx->blocks) {
    auto ext = lsm::DecodeSstBlock(std::string_view(obj).substr(entry.offset, entry.length), entry,
                                   "map/1-1.sst", idx->key.get());
    REQUIRE(ext.ok());
    out.insert(out.end(), ext->begin(), ext->end());
  }
  CHECK(out == in);
  // Without a key: the index names the key id; a flipped bit anywhere: Corruption.
  auto none = lsm::DecodeSstIndex(obj, obj.size(), "map/1-1.sst", nullptr);
  CHECK(none.status().code() == Status::Code::kInvalidArgument);
  for (size_t at = 0; at < obj.size(); at += 5) {
    std::string bad = obj;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    Status st;
    auto i2 = lsm::DecodeSstIndex(bad, bad.size(), "map/1-1.sst", ring.get());
    if (!i2.ok()) {
      st = i2.status();
    } else {
      for (const auto& entry : i2->blocks) {
        auto ext = lsm::DecodeSstBlock(std::string_view(bad).substr(entry.offset, entry.length),
                                       entry, "map/1-1.sst", i2->key.get());
        if (!ext.ok()) st = ext.status();
      }
    }
    INFO("byte " << at);
    REQUIRE(st.IsCorruption());
    CHECK_THAT(st.message(), Catch::Contains("map/1-1.sst"));
  }
}

}  // namespace
}  // namespace portal::volume
