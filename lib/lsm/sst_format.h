// Map SST objects (map/<epoch>-<n>.sst): sorted, non-overlapping extents in checksummed
// blocks, an index, and a footer with the key range and a per-segment summary. Layout at
// the top of sst_format.cc and in docs/volume.md.
//
// Pure encode/decode: no I/O. Readers fetch the tail (trailer + footer + index), decode
// the index with DecodeSstIndex, then fetch and decode blocks on demand.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/aead.h"
#include "lsm/extent.h"
#include "util/status.h"

namespace portal::lsm {

constexpr size_t kSstTrailerSize = 20;
constexpr uint32_t kSstFormatVersion = 1;

// An SST as the manifest lists it.
struct SstRef {
  std::string key;  // map/<epoch>-<n>.sst
  uint64_t min_block = 0;
  uint64_t end_block = 0;  // key range [min_block, end_block), zero/hole extents included
  uint64_t size_bytes = 0;
  uint64_t extent_count = 0;
  uint64_t data_blocks = 0;
  friend bool operator==(const SstRef&, const SstRef&) = default;
};

struct SstIndexEntry {
  uint64_t first_block = 0;  // first key in the block
  uint64_t end_block = 0;    // end of the last extent in the block
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t checksum = 0;
};

// Everything but the data blocks.
struct SstIndex {
  uint64_t min_block = 0;
  uint64_t end_block = 0;
  uint64_t extent_count = 0;
  uint64_t data_blocks = 0;                       // blocks mapped to segment data
  std::map<uint64_t, uint64_t> segment_blocks;    // segment id -> data blocks referenced
  std::vector<SstIndexEntry> blocks;
  uint64_t index_offset = 0;  // where the index starts in the object (= data area size)
  // Encrypted SSTs only (not stored: made from the sealed meta's header): opens blocks.
  std::shared_ptr<const crypto::ObjectKey> key;
  // Bytes of memory the decoded index takes (cache charge).
  uint64_t memory_bytes() const {
    return sizeof(*this) + blocks.size() * sizeof(SstIndexEntry) + segment_blocks.size() * 48;
  }
};

// Builds an SST from extents added in ascending, non-overlapping order.
class SstBuilder {
 public:
  // `keyring`: encrypt (docs/volume.md "Encryption") under a key drawn for this object.
  explicit SstBuilder(size_t block_bytes = 4096, const crypto::Keyring* keyring = nullptr)
      : block_bytes_(block_bytes),
        key_(keyring ? keyring->NewObjectKey(crypto::Purpose::kMapSst) : nullptr) {}
  void Add(const Extent& e);
  bool empty() const { return count_ == 0; }
  uint64_t extent_count() const { return count_; }
  // Bytes so far (to cut output files at a target size).
  uint64_t estimated_size() const { return out_.size() + block_.size(); }
  // Finishes the object; `index` receives the decoded index of what was written.
  std::string Finish(SstIndex* index);

 private:
  void FlushBlock();

  size_t block_bytes_;
  std::shared_ptr<const crypto::ObjectKey> key_;  // null: unencrypted
  std::string out_;
  std::string block_;
  uint64_t block_count_ = 0;  // extents in the current block
  uint64_t block_first_ = 0;
  uint64_t prev_end_ = 0;     // end of the previous extent (block-local deltas)
  uint64_t prev_segment_ = 0;
  uint64_t count_ = 0;
  SstIndex index_;
};

// Parses the trailer (last kSstTrailerSize bytes): returns the length of footer + index,
// which precede the trailer.
Result<uint64_t> ParseSstTrailer(std::string_view trailer, const std::string& name);
// Decodes the tail (at least trailer + footer + index bytes) of an object of `size` bytes.
// An encrypted SST needs `keyring` (InvalidArgument naming its key id without it); with a
// keyring, an unencrypted SST is Corruption.
Result<SstIndex> DecodeSstIndex(std::string_view tail, uint64_t size, const std::string& name,
                                const crypto::Keyring* keyring = nullptr);
// Decodes one data block, verifying its checksum and that it matches its index entry.
// `key`: the index's key (null for an unencrypted SST).
Result<std::vector<Extent>> DecodeSstBlock(std::string_view bytes, const SstIndexEntry& entry,
                                           const std::string& name,
                                           const crypto::ObjectKey* key = nullptr);

}  // namespace portal::lsm
