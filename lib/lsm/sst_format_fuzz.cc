// libFuzzer target lsm_sst_format (fuzz/README.md): map SST objects as a hostile or
// damaged store returns them: the trailer, the index (from the whole object and from the
// tail alone, as SstReader fetches it), then every data block it lists. Bad bytes must be
// a Corruption, never a crash or an allocation the object's size does not bound.
//
// Input: mode u8, then the object. Mode bit 0: first rewrite the trailer's index
// checksum to match, and check each block against the checksum of its actual bytes, so
// that mutations reach the parsers instead of stopping at a checksum.
#include <cstdint>
#include <cstring>
#include <string>

#include "lsm/sst_format.h"
#include "util/assert.h"
#include "util/checksum.h"
#include "util/coding.h"

using namespace portal;
using namespace portal::lsm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string object(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((mode & 1) && object.size() >= kSstTrailerSize) {
    auto* t = reinterpret_cast<uint8_t*>(object.data() + object.size() - kSstTrailerSize);
    const uint32_t meta_len = LoadLE32(t);
    if (meta_len <= object.size() - kSstTrailerSize) {
      std::string fixed;
      PutFixed64(&fixed,
                 Checksum64(std::string_view(
                     object.data() + object.size() - kSstTrailerSize - meta_len, meta_len)));
      std::memcpy(t + 4, fixed.data(), 8);
    }
  }
  const std::string name = "map/fuzz.sst";
  auto meta_len = ParseSstTrailer(object, name);
  if (!meta_len.ok()) {
    PORTAL_ASSERT(meta_len.status().IsCorruption() ||
                      meta_len.status().code() == Status::Code::kInvalidArgument,
                  "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  auto index = DecodeSstIndex(object, object.size(), name);
  if (!index.ok()) {
    PORTAL_ASSERT(
        index.status().IsCorruption() || index.status().code() == Status::Code::kInvalidArgument,
        "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  const std::string_view tail =
      std::string_view(object).substr(object.size() - kSstTrailerSize - *meta_len);
  auto again = DecodeSstIndex(tail, object.size(), name);
  PORTAL_ASSERT(again.ok() && again->blocks.size() == index->blocks.size() &&
                    again->segment_blocks == index->segment_blocks,
                "the tail decodes differently from the object");
  uint64_t prev_end = index->min_block;
  for (SstIndexEntry entry : index->blocks) {
    PORTAL_ASSERT(entry.offset + entry.length <= index->index_offset, "block outside the data");
    const std::string_view bytes = std::string_view(object).substr(entry.offset, entry.length);
    if (mode & 1) entry.checksum = Checksum64(bytes);
    auto extents = DecodeSstBlock(bytes, entry, name);
    if (!extents.ok()) {
      PORTAL_ASSERT(extents.status().IsCorruption() ||
                        extents.status().code() == Status::Code::kInvalidArgument,
                    "not Corruption, nor InvalidArgument (an encrypted object, no key)");
      continue;
    }
    // What SstReader and compaction rely on: sorted, non-overlapping, inside the entry.
    PORTAL_ASSERT(!extents->empty(), "empty block");
    for (const Extent& e : *extents) {
      PORTAL_ASSERT(e.first < e.end, "empty extent");
      PORTAL_ASSERT(e.first >= prev_end, "extents out of order");
      PORTAL_ASSERT(e.first >= entry.first_block && e.end <= entry.end_block,
                    "extent outside its index entry");
      prev_end = e.end;
    }
  }
  return 0;
}
