// BlockDevice: the seam between a front end (the NBD server) and storage (a volume).
//
// The NBD codec validates every request (flags, bounds, read-only) before calling a
// device, so implementations may assume: offset + length <= size_bytes(), lengths fit
// in memory for Read/Write (<= the codec's max payload), and no call on a read-only
// device writes. Offsets and lengths are in bytes and need not be block-aligned; a
// device handles partial blocks itself.
//
// Durability (DESIGN.md "Durability contract"):
// - Write/Trim/WriteZeroes completing: visible to every later Read on any connection.
// - Flush completing: every write completed before Flush was called is durable.
// - flags.fua: the call's own data is durable when it completes.
//
// Thread-safety: every method may be called concurrently from any thread. Buffers passed
// by span must stay valid until the returned Task completes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "env/task.h"
#include "util/status.h"

namespace portal::device {

struct WriteFlags {
  bool fua = false;
  // Optional owner of a Write's data, alive for the whole call: while the owner lives,
  // the bytes stay valid and nobody changes them, so a device may keep a copy of the
  // owner instead of copying the bytes.
  const std::shared_ptr<const void>* keep = nullptr;
};
// Flags travel by value into coroutines, often as braced temporaries inside co_await
// expressions, which GCC 12 destroys twice: a shared_ptr member there loses a reference
// per call (found by ASan when `keep` was one). Keep the flags trivial.
static_assert(std::is_trivially_destructible_v<WriteFlags>);

struct ZeroFlags {
  bool fua = false;
  bool no_hole = false;    // keep the range allocated (reads as zero, not reported a hole)
  bool fast_only = false;  // fail with NotSupported unless zeroing is cheaper than writing
};

// A byte range [offset, offset + length).
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

// One extent of a BlockStatus answer (NBD base:allocation semantics).
struct StatusExtent {
  uint64_t length = 0;
  bool hole = false;  // not allocated in storage
  bool zero = false;  // reads as zeroes
  friend bool operator==(const StatusExtent&, const StatusExtent&) = default;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t size_bytes() const = 0;
  // Preferred I/O size: a power of two >= 512. Smaller or unaligned I/O works, at the
  // price of a read-modify-write.
  virtual uint32_t block_size() const = 0;
  virtual bool read_only() const { return false; }

  // Reads [offset, offset + out.size()) into `out`. When `zeroes` is not null, the device
  // may append ranges (offsets relative to `offset`, ascending, disjoint) that it knows
  // read as zero without stored data, so the codec can send them as holes. Their bytes
  // in `out` are zero either way.
  virtual Task<Status> Read(uint64_t offset, std::span<uint8_t> out,
                            std::vector<ByteRange>* zeroes) = 0;
  virtual Task<Status> Write(uint64_t offset, std::span<const uint8_t> data,
                             WriteFlags flags) = 0;
  virtual Task<Status> Flush() = 0;
  // Discards the range: it reads as zeroes afterwards (portalbd never returns stale data
  // for a trimmed range). Bytes outside the range are untouched.
  virtual Task<Status> Trim(uint64_t offset, uint64_t length, WriteFlags flags) = 0;
  virtual Task<Status> WriteZeroes(uint64_t offset, uint64_t length, ZeroFlags flags) = 0;
  // Allocation status from `offset`: consecutive extents covering at most `length`
  // bytes, at most `max_extents` of them, at least one. Never reads block data.
  virtual Task<Result<std::vector<StatusExtent>>> BlockStatus(uint64_t offset, uint64_t length,
                                                               uint32_t max_extents) = 0;
  // A hint that [offset, offset + length) will be read soon.
  virtual Task<Status> Cache(uint64_t offset, uint64_t length) = 0;
};

}  // namespace portal::device
