// Golden bytes: fixed inputs encoded into segments whose checksums were computed with the
// encoders as they were before the single segment encoder EncodeSegment (commit 0e050f1:
// Seal, SealPieces, EncodeSegment, EncodeSegmentOwned, EncodeRawSegmentTail). A store written
// then must read back the same, and a retry must produce the same object (lost-ack
// read-back compares footer checksums), so the bytes may never change.
//
// The compressed cases also pin the LZ4 library's output: after an lz4 upgrade, if only
// they fail, check that the raw ones still pass and that the old objects still decode.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <vector>

#include "util/checksum.h"
#include "volume/segment_format.h"
#include "volume/write_buffer.h"

namespace portal::volume {
namespace {

struct Golden {
  uint64_t bytes_sum;    // Checksum64 of the whole object
  uint64_t footer_sum;   // EncodedSegment::footer_checksum
  uint64_t size;
};

Golden Of(EncodedSegment enc) {
  const std::string bytes = std::move(enc.bytes).Flatten();
  return Golden{Checksum64(bytes), enc.footer_checksum, bytes.size()};
}

// Blocks of pseudo-random bytes, every third one a run of a few letters (LZ4 shrinks it).
std::string Content(uint64_t blocks, uint32_t block_size, uint64_t seed) {
  std::string d(blocks * block_size, '\0');
  uint64_t x = seed;
  for (size_t i = 0; i < d.size(); ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const uint64_t block = i / block_size;
    d[i] = block % 3 == 0 ? static_cast<char>('a' + (i / 512) % 5) : static_cast<char>(x >> 56);
  }
  return d;
}

SegmentFooter Footer(uint64_t id) {
  SegmentFooter f;
  f.segment_id = id;
  f.epoch = 4;
  f.block_size = 4096;
  f.blocks_per_chunk = 16;
  f.durable_through = id - 1;
  return f;
}

// A relocation: data plus conditional extents, as GC builds them.
Golden Relocation(bool compress) {
  SegmentFooter f = Footer(31);
  f.first_seq = 0;
  f.last_seq = 0;
  f.data_blocks = 40;
  f.extents.push_back({{100, 120, lsm::Loc::Data(31, 0)}, true, lsm::Loc::Data(7, 3)});
  f.extents.push_back({{500, 510, lsm::Loc::Data(31, 20)}, true, lsm::Loc::Data(9, 0)});
  f.extents.push_back({{1ull << 40, (1ull << 40) + 10, lsm::Loc::Data(31, 30)}, true,
                       lsm::Loc::Data(12, 77)});
  objstore::Rope data(Content(40, 4096, 99));
  return Of(EncodeSegment(&f, SegmentContents{std::move(data), {}}, {compress, nullptr}));
}

// A write buffer after copied writes, in-place rewrites, adopted (large) writes, partly
// rewritten adopted memory (copied out of the rope), zeroes and trims.
std::unique_ptr<WriteBuffer> FilledBuffer() {
  auto buf = std::make_unique<WriteBuffer>(4096, 16);
  uint64_t seq = 1;
  std::string a = Content(8, 4096, 1);
  buf->WriteBlocks(10, reinterpret_cast<const uint8_t*>(a.data()), 8, seq++);
  std::string b = Content(3, 4096, 2);
  buf->WriteBlocks(12, reinterpret_cast<const uint8_t*>(b.data()), 3, seq++);  // in place
  auto big = std::make_shared<const std::string>(Content(80, 4096, 3));
  buf->WriteBlocks(1000, reinterpret_cast<const uint8_t*>(big->data()), 80, seq++, big);
  auto big2 = std::make_shared<const std::string>(Content(64, 4096, 4));
  buf->WriteBlocks(5000, reinterpret_cast<const uint8_t*>(big2->data()), 64, seq++, big2);
  std::string c = Content(50, 4096, 5);
  buf->WriteBlocks(5005, reinterpret_cast<const uint8_t*>(c.data()), 50, seq++);  // over big2
  std::string zero(5 * 4096, '\0');
  buf->WriteBlocks(2000, reinterpret_cast<const uint8_t*>(zero.data()), 5, seq++);
  buf->WriteZeroRun(3000, 3100, lsm::LocKind::kHole, seq++);
  buf->WriteZeroRun(1010, 1020, lsm::LocKind::kZero, seq++);
  std::string d = Content(1, 4096, 6);
  buf->WriteBlocks(1ull << 30, reinterpret_cast<const uint8_t*>(d.data()), 1, seq++);
  return buf;
}

// `as_rope`: the buffer's memory as it is; else first joined into one string (the two
// shapes memory:// and file:// took before).
Golden UserSegment(bool compress, bool as_rope) {
  auto buf = FilledBuffer();
  SegmentFooter f = Footer(17);
  SegmentContents contents = buf->Contents(&f);
  if (!as_rope) contents = SegmentContents{objstore::Rope(contents.data.Flatten()), {}};
  return Of(EncodeSegment(&f, std::move(contents), {compress, nullptr}));
}

Golden Fence() {
  SegmentFooter f = Footer(9);
  return Of(EncodeSegment(&f, {}, {}));
}

void Check(const Golden& got, const Golden& want) {
  CHECK(got.size == want.size);
  CHECK(got.footer_sum == want.footer_sum);
  CHECK(got.bytes_sum == want.bytes_sum);
}

// Computed with the encoders of commit 0e050f1 (see the top of this file).
constexpr Golden kUserRaw{0x09bc9aad7a56d265ULL, 0x101bc3b2bc3f9d95ULL, 585941};
constexpr Golden kUserLz4{0x04278b9b64480a70ULL, 0x0022ad4e150d608bULL, 384701};
constexpr Golden kRelocationRaw{0xd307bca716078d74ULL, 0x9d98d7a64452c468ULL, 163945};
constexpr Golden kRelocationLz4{0x45bc03ff7d3959c3ULL, 0xc2df063ae4d5563eULL, 107588};
constexpr Golden kFence{0x65a2a127dfdcb0aaULL, 0x4c412c94dfd5b8bfULL, 32};

TEST_CASE("segment bytes match the encoders' golden output", "[volume][format]") {
  SECTION("user write buffer, raw (memory:// rope and one string)") {
    Check(UserSegment(false, true), kUserRaw);
    Check(UserSegment(false, false), kUserRaw);
  }
  SECTION("user write buffer, compressed") {
    Check(UserSegment(true, true), kUserLz4);
    Check(UserSegment(true, false), kUserLz4);
  }
  SECTION("GC relocation, raw and compressed") {
    Check(Relocation(false), kRelocationRaw);
    Check(Relocation(true), kRelocationLz4);
  }
  SECTION("fence") { Check(Fence(), kFence); }
}

}  // namespace
}  // namespace portal::volume
