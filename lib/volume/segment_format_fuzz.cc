// libFuzzer target volume_segment_format (fuzz/README.md): segment objects as a hostile
// or damaged store returns them. The footer is decoded from the whole object and from
// the tail alone (as the segment reader fetches it), then every chunk it lists is
// decoded. Bad bytes must be a Corruption, never a crash, and never an allocation the
// object's own size does not bound (-rss_limit_mb).
//
// Input: mode u8, then the object. Mode bit 0: first rewrite the trailer's footer
// checksum to match, so that mutations reach the footer parser instead of stopping at
// the checksum (a hostile writer computes checksums too).
#include <cstdint>
#include <cstring>
#include <string>

#include "util/assert.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "volume/segment_format.h"

using namespace portal;
using namespace portal::volume;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string object(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((mode & 1) && object.size() >= kSegmentTrailerSize) {
    auto* t = reinterpret_cast<uint8_t*>(object.data() + object.size() - kSegmentTrailerSize);
    const uint32_t footer_len = LoadLE32(t);
    if (footer_len <= object.size() - kSegmentTrailerSize) {
      const uint64_t sum = Checksum64(std::string_view(
          object.data() + object.size() - kSegmentTrailerSize - footer_len, footer_len));
      std::string fixed;
      PutFixed64(&fixed, sum);
      std::memcpy(t + 4, fixed.data(), 8);
    }
  }
  const std::string name = "seg/fuzz.seg";
  auto footer_len = ParseSegmentTrailer(object, name);
  if (!footer_len.ok()) {
    PORTAL_ASSERT(footer_len.status().IsCorruption() ||
                      footer_len.status().code() == Status::Code::kInvalidArgument,
                  "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  uint64_t sum = 0;
  auto footer = DecodeSegmentFooter(object, object.size(), name, &sum);
  if (!footer.ok()) {
    PORTAL_ASSERT(
        footer.status().IsCorruption() || footer.status().code() == Status::Code::kInvalidArgument,
        "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  // The reader decodes from the tail alone: same answer.
  const std::string_view tail =
      std::string_view(object).substr(object.size() - kSegmentTrailerSize - *footer_len);
  auto again = DecodeSegmentFooter(tail, object.size(), name);
  PORTAL_ASSERT(again.ok() && again->extents == footer->extents &&
                    again->chunks.size() == footer->chunks.size(),
                "the tail decodes differently from the object");
  const SegmentFooter& f = *footer;
  PORTAL_ASSERT(f.durable_through < f.segment_id || f.segment_id == 0, "bad durable_through");
  uint64_t blocks = 0;
  for (const ChunkInfo& c : f.chunks) {
    PORTAL_ASSERT(c.offset + c.stored_len <= object.size(), "chunk outside the object");
    blocks += c.raw_blocks;
    auto raw =
        DecodeChunk(std::string_view(object).substr(c.offset, c.stored_len), c, f.block_size, name);
    if (!raw.ok()) {
      PORTAL_ASSERT(
          raw.status().IsCorruption() || raw.status().code() == Status::Code::kInvalidArgument,
          "not Corruption, nor InvalidArgument (an encrypted object, no key)");
      continue;
    }
    PORTAL_ASSERT(raw->size() == c.raw_blocks * f.block_size, "chunk decoded to a wrong size");
  }
  PORTAL_ASSERT(blocks == f.data_blocks, "chunks do not add up");
  for (const SegmentExtent& e : f.extents) {
    PORTAL_ASSERT(e.extent.first < e.extent.end, "empty extent");
    if (e.extent.loc.is_data()) {
      PORTAL_ASSERT(e.extent.loc.index + e.extent.length() <= f.data_blocks,
                    "extent outside the data stream");
    }
  }
  return 0;
}
