// MemoryVolume: a sparse in-memory BlockDevice. Only written blocks take memory (one
// block_size buffer each); trimmed and zeroed ranges are single extents, so a 1 EiB
// device costs nothing until written and a TRIM of any length is O(extents touched).
//
// It is the NBD server's reference device (protocol tests, fuzzing) and the model the
// object-store volume is checked against; test code only, never served by portalbd.
// Nothing is durable: Flush is a no-op.
//
// Thread-safe: readers share a lock, writers take it exclusively, so a read-modify-write
// of a partial block is atomic with respect to every other request.
#pragma once

#include <memory>
#include <shared_mutex>

#include "device/block_device.h"
#include "util/range_map.h"

namespace portal::testing {

class MemoryVolume final : public device::BlockDevice {
 public:
  // size_bytes > 0; block_size a power of two >= 512.
  MemoryVolume(uint64_t size_bytes, uint32_t block_size);

  uint64_t size_bytes() const override { return size_bytes_; }
  uint32_t block_size() const override { return block_size_; }

  Task<Status> Read(uint64_t offset, std::span<uint8_t> out,
                    std::vector<device::ByteRange>* zeroes) override;
  Task<Status> Write(uint64_t offset, std::span<const uint8_t> data,
                     device::WriteFlags flags) override;
  Task<Status> Flush() override;
  Task<Status> Trim(uint64_t offset, uint64_t length, device::WriteFlags flags) override;
  Task<Status> WriteZeroes(uint64_t offset, uint64_t length, device::ZeroFlags flags) override;
  Task<Result<std::vector<device::StatusExtent>>> BlockStatus(uint64_t offset, uint64_t length,
                                                               uint32_t max_extents) override;
  Task<Status> Cache(uint64_t offset, uint64_t length) override;

  // Blocks holding data (for tests and memory accounting).
  uint64_t data_blocks() const;
  size_t extent_count() const;

 private:
  enum class Kind : uint8_t { kData, kZero, kHole };
  struct Extent {
    Kind kind = Kind::kHole;
    std::shared_ptr<uint8_t[]> data;  // kData: exactly one block
    Extent Slice(uint64_t) const { return *this; }
    bool Continues(uint64_t, const Extent& next) const {
      return kind != Kind::kData && kind == next.kind;
    }
  };

  // Zeroes [offset, offset + length) exactly, marking whole blocks `kind`. Caller holds
  // mu_ exclusively.
  void ZeroRangeLocked(uint64_t offset, uint64_t length, Kind kind);
  // Writes `len` bytes at byte `in_block` of block `block`. Caller holds mu_ exclusively.
  void WriteBlockLocked(uint64_t block, uint32_t in_block, const uint8_t* src, uint32_t len);

  const uint64_t size_bytes_;
  const uint32_t block_size_;
  const uint32_t block_shift_;
  mutable std::shared_mutex mu_;
  RangeMap<Extent> map_;  // GUARDED_BY(mu_); keys are block indexes
  uint64_t data_blocks_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace portal::testing
