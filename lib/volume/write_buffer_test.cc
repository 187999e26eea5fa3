#include "volume/write_buffer.h"

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <algorithm>
#include <cstring>

#include "util/checksum.h"

namespace portal::volume {
namespace {

constexpr uint32_t kBs = 512;

std::vector<uint8_t> Blocks(uint64_t n, uint8_t seed) {
  std::vector<uint8_t> d(n * kBs);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(seed + i / kBs + 1);
  return d;
}

TEST_CASE("WriteBuffer takes its slabs from the recycler and they come back", "[volume]") {
  BufferRecycler recycler(64 << 20);
  const uint8_t* slab = nullptr;
  {
    WriteBuffer buf(kBs, 0, &recycler);
    auto d = Blocks(3, 7);
    buf.WriteBlocks(10, d.data(), 3, 1);
    CHECK(recycler.misses() == 1);
    buf.ForEach(10, 13, [&](const WriteBuffer::Piece& p) {
      slab = p.data;
      CHECK(std::memcmp(p.data, d.data(), d.size()) == 0);
      return true;
    });
    CHECK(recycler.pooled_bytes() == 0);
  }
  CHECK(recycler.pooled_bytes() == (1u << 20));  // the slab, once the buffer is gone
  WriteBuffer again(kBs, 0, &recycler);
  auto e = Blocks(1, 9);
  again.WriteBlocks(0, e.data(), 1, 1);
  CHECK(recycler.hits() == 1);
  again.ForEach(0, 1, [&](const WriteBuffer::Piece& p) {
    CHECK(p.data == slab);  // the same memory, now with the new block
    CHECK(std::memcmp(p.data, e.data(), e.size()) == 0);
    return true;
  });
}

TEST_CASE("WriteBuffer matches a block model and seals into a consistent segment",
          "[volume][property]") {
  rc::prop("random writes, zeroes and trims", [] {
    constexpr uint64_t kBlocks = 3000;  // spans several 1 MiB slabs at 512 B blocks
    // Chunk checksums precomputed for adopted writes, at the sealed chunk size or not.
    // Slabs recycled or not: recycled ones still hold an earlier case's blocks.
    static BufferRecycler recycler(64 << 20);
    const uint32_t chunk = *rc::gen::element(0u, 1u, 3u, 16u);
    WriteBuffer buf(kBs, chunk, *rc::gen::arbitrary<bool>() ? &recycler : nullptr);
    // model: -1 unwritten, -2 zero, -3 hole, else seed byte of block
    std::vector<int> model(kBlocks, -1);
    std::vector<std::vector<uint8_t>> content(kBlocks);
    // Writes the buffer may adopt, with a copy to check that it never changes them.
    std::vector<std::pair<std::shared_ptr<const std::vector<uint8_t>>, std::vector<uint8_t>>>
        adopted;
    auto n_ops = *rc::gen::inRange(1, 60);
    for (int op = 0; op < n_ops; ++op) {
      uint64_t first = *rc::gen::inRange<uint64_t>(0, kBlocks);
      uint64_t n = *rc::gen::inRange<uint64_t>(1, std::min<uint64_t>(kBlocks - first, 2500) + 1);
      int kind = *rc::gen::inRange(0, 4);
      if (kind <= 1) {
        uint8_t seed = *rc::gen::arbitrary<uint8_t>();
        auto d = Blocks(n, seed);
        if (kind == 1) std::memset(d.data(), 0, kBs);  // a zero block inside data
        if (*rc::gen::arbitrary<bool>()) {
          auto owned = std::make_shared<const std::vector<uint8_t>>(d);
          buf.WriteBlocks(first, owned->data(), n, op + 1, owned);
          adopted.emplace_back(owned, d);
        } else {
          buf.WriteBlocks(first, d.data(), n, op + 1);
        }
        for (uint64_t i = 0; i < n; ++i) {
          content[first + i].assign(d.begin() + i * kBs, d.begin() + (i + 1) * kBs);
          bool zero = std::all_of(content[first + i].begin(), content[first + i].end(),
                                  [](uint8_t c) { return c == 0; });
          model[first + i] = zero ? -2 : 0;
        }
      } else {
        buf.WriteZeroRun(first, first + n, kind == 2 ? lsm::LocKind::kZero : lsm::LocKind::kHole,
                         op + 1);
        for (uint64_t i = 0; i < n; ++i) model[first + i] = kind == 2 ? -2 : -3;
      }
    }
    // Reading through ForEach matches the model.
    std::vector<int> seen(kBlocks, -1);
    buf.ForEach(0, kBlocks, [&](const WriteBuffer::Piece& p) {
      for (uint64_t b = p.first; b < p.end; ++b) {
        if (p.kind == lsm::LocKind::kData) {
          RC_ASSERT(std::memcmp(p.data + (b - p.first) * kBs, content[b].data(), kBs) == 0);
          seen[b] = 0;
        } else {
          seen[b] = p.kind == lsm::LocKind::kZero ? -2 : -3;
        }
      }
      return true;
    });
    RC_ASSERT(seen == model);
    for (const auto& [owned, copy] : adopted) RC_ASSERT(*owned == copy);
    // The sealed segment: the buffer's memory as a rope, with the chunk checksums of the
    // adopted writes (when the chunk sizes agree), which must be the stream's.
    SegmentFooter f;
    f.segment_id = 7;
    f.block_size = kBs;
    f.blocks_per_chunk = *rc::gen::element(1u, 3u, 16u);
    SegmentContents contents = buf.Contents(&f);
    const std::string data = contents.data.Flatten();
    RC_ASSERT(data.size() == f.data_blocks * kBs);
    const size_t chunk_bytes = size_t{f.blocks_per_chunk} * kBs;
    for (size_t i = 0; i < contents.chunk_sums.size(); ++i) {
      if (!contents.chunk_sums[i]) continue;
      RC_ASSERT(*contents.chunk_sums[i] ==
                Checksum64(std::string_view(data).substr(i * chunk_bytes, chunk_bytes)));
    }
    // Encoded from the rope or from one string: the very same object.
    SegmentFooter f2 = f;
    EncodedSegment enc = EncodeSegment(&f, std::move(contents), {});
    EncodedSegment flat = EncodeSegment(&f2, SegmentContents{objstore::Rope(data), {}}, {});
    const std::string bytes = std::move(enc.bytes).Flatten();
    RC_ASSERT(bytes == std::move(flat.bytes).Flatten());
    RC_ASSERT(enc.footer_checksum == flat.footer_checksum);
    auto dec = DecodeSegmentFooter(bytes, bytes.size(), "s");
    RC_ASSERT(dec.ok());
    for (const ChunkInfo& c : dec->chunks) {
      RC_ASSERT(DecodeChunk(std::string_view(bytes).substr(c.offset, c.stored_len), c, kBs, "s")
                    .ok());
    }
    std::vector<int> sealed(kBlocks, -1);
    uint64_t prev_end = 0;
    for (const auto& se : dec->extents) {
      const auto& e = se.extent;
      RC_ASSERT(e.first >= prev_end);
      prev_end = e.end;
      for (uint64_t b = e.first; b < e.end; ++b) {
        if (e.loc.is_data()) {
          uint64_t idx = e.loc.index + (b - e.first);
          RC_ASSERT(std::memcmp(data.data() + idx * kBs, content[b].data(), kBs) == 0);
          sealed[b] = 0;
        } else {
          sealed[b] = e.loc.kind == lsm::LocKind::kZero ? -2 : -3;
        }
      }
    }
    RC_ASSERT(sealed == model);
  });
}

TEST_CASE("rewriting blocks in the buffer reuses their slots", "[volume]") {
  WriteBuffer buf(kBs);
  auto d = Blocks(8, 1);
  buf.WriteBlocks(100, d.data(), 8, 1);
  uint64_t bytes = buf.bytes();
  for (int i = 0; i < 10; ++i) buf.WriteBlocks(102, d.data(), 4, 2 + i);
  CHECK(buf.bytes() == bytes);
  CHECK(buf.first_seq() == 1);
  CHECK(buf.last_seq() == 11);
}

TEST_CASE("a large write with an owner is kept by reference, never written to", "[volume]") {
  WriteBuffer buf(kBs);
  const uint64_t n = 2 * WriteBuffer::kAdoptMinBytes / kBs;
  auto owned = std::make_shared<std::vector<uint8_t>>(n * kBs, uint8_t{0xa5});
  std::memset(owned->data(), 0, kBs);  // a zero block: not a slot, but memory held
  const std::vector<uint8_t> copy = *owned;
  buf.WriteBlocks(1000, owned->data(), n, 1, owned);
  CHECK(owned.use_count() == 2);
  CHECK(buf.bytes() == n * kBs);
  const uint8_t* seen = nullptr;
  buf.ForEach(1001, 1002, [&](const WriteBuffer::Piece& p) {
    seen = p.data;
    return true;
  });
  CHECK(seen == owned->data() + kBs);  // the caller's memory, not a copy
  // Rewriting adopted blocks takes new slots: the adopted bytes stay as they were.
  auto d = Blocks(4, 9);
  buf.WriteBlocks(1002, d.data(), 4, 2);
  CHECK(*owned == copy);
  buf.ForEach(1002, 1003, [&](const WriteBuffer::Piece& p) {
    CHECK(std::memcmp(p.data, d.data(), kBs) == 0);
    return true;
  });
  // Sealed as a rope, the adopted run is referenced, not copied; the slab holding the
  // four rewritten blocks is mostly empty, so those are copied out of it.
  {
    SegmentFooter f;
    f.segment_id = 1;
    f.block_size = kBs;
    f.blocks_per_chunk = 16;
    const objstore::Rope rope = buf.Contents(&f).data;
    bool references_owned = false;
    for (const auto& piece : rope.pieces()) {
      if (piece.owner == owned) references_owned = true;
    }
    CHECK(references_owned);
    CHECK(rope.size() == (n - 1) * kBs);
  }
  // A small write with an owner is copied.
  auto small = std::make_shared<std::vector<uint8_t>>(Blocks(2, 5));
  buf.WriteBlocks(5000, small->data(), 2, 3, small);
  CHECK(small.use_count() == 1);
}

}  // namespace
}  // namespace portal::volume
