#include "testing/memory_volume.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <mutex>

namespace portal::testing {

using device::ByteRange;
using device::StatusExtent;
using device::WriteFlags;
using device::ZeroFlags;

MemoryVolume::MemoryVolume(uint64_t size_bytes, uint32_t block_size)
    : size_bytes_(size_bytes),
      block_size_(block_size),
      block_shift_(static_cast<uint32_t>(std::countr_zero(block_size))) {
  PORTAL_ASSERT(size_bytes > 0, "empty device");
  PORTAL_ASSERT(std::has_single_bit(block_size) && block_size >= 512, "bad block size");
}

Task<Status> MemoryVolume::Read(uint64_t offset, std::span<uint8_t> out,
                                std::vector<ByteRange>* zeroes) {
  if (out.empty()) co_return Status::Ok();
  const uint64_t end = offset + out.size();
  const uint64_t first = offset >> block_shift_;
  const uint64_t last = (end - 1) >> block_shift_;
  auto add_zero = [&](uint64_t from, uint64_t to) {  // absolute bytes
    std::memset(out.data() + (from - offset), 0, to - from);
    if (!zeroes) return;
    if (!zeroes->empty() && zeroes->back().offset + zeroes->back().length == from - offset) {
      zeroes->back().length += to - from;
    } else {
      zeroes->push_back({from - offset, to - from});
    }
  };

  std::shared_lock lock(mu_);
  uint64_t cursor = offset;  // next byte not yet filled
  map_.ForEach(first, last + 1, [&](uint64_t b, uint64_t e, const Extent& x) {
    uint64_t from = std::max(offset, b << block_shift_);
    uint64_t to = std::min(end, e << block_shift_);
    if (from > cursor) add_zero(cursor, from);
    if (x.kind == Kind::kData) {
      std::memcpy(out.data() + (from - offset),
                  x.data.get() + (from - (b << block_shift_)), to - from);
    } else {
      add_zero(from, to);
    }
    cursor = to;
    return true;
  });
  if (cursor < end) add_zero(cursor, end);
  co_return Status::Ok();
}

void MemoryVolume::WriteBlockLocked(uint64_t block, uint32_t in_block, const uint8_t* src,
                                    uint32_t len) {
  const auto* found = map_.Find(block);
  if (found && found->second.value.kind == Kind::kData) {
    // Readers hold the shared lock; we hold it exclusively, so in-place is safe.
    std::memcpy(found->second.value.data.get() + in_block, src, len);
    return;
  }
  std::shared_ptr<uint8_t[]> data(new uint8_t[block_size_]);
  if (len != block_size_) std::memset(data.get(), 0, block_size_);
  std::memcpy(data.get() + in_block, src, len);
  map_.Assign(block, block + 1, Extent{Kind::kData, std::move(data)});
  ++data_blocks_;
}

Task<Status> MemoryVolume::Write(uint64_t offset, std::span<const uint8_t> data, WriteFlags) {
  std::unique_lock lock(mu_);
  uint64_t pos = offset;
  const uint8_t* src = data.data();
  size_t left = data.size();
  while (left > 0) {
    uint64_t block = pos >> block_shift_;
    uint32_t in_block = static_cast<uint32_t>(pos & (block_size_ - 1));
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(left, block_size_ - in_block));
    WriteBlockLocked(block, in_block, src, n);
    pos += n;
    src += n;
    left -= n;
  }
  co_return Status::Ok();
}

Task<Status> MemoryVolume::Flush() { co_return Status::Ok(); }

void MemoryVolume::ZeroRangeLocked(uint64_t offset, uint64_t length, Kind kind) {
  if (length == 0) return;
  const uint64_t end = offset + length;
  uint64_t first_full = (offset + block_size_ - 1) >> block_shift_;
  uint64_t end_full = end >> block_shift_;
  // Partial edge blocks: zero exactly the requested bytes of blocks holding data.
  auto zero_partial = [&](uint64_t from, uint64_t to) {
    if (from >= to) return;
    uint64_t block = from >> block_shift_;
    const auto* found = map_.Find(block);
    if (!found || found->second.value.kind != Kind::kData) return;  // already zero
    std::memset(found->second.value.data.get() + (from & (block_size_ - 1)), 0, to - from);
  };
  if (first_full >= end_full) {
    // No whole block inside: the range touches at most two blocks, both partially.
    for (uint64_t b = offset >> block_shift_; b <= (end - 1) >> block_shift_; ++b) {
      zero_partial(std::max(offset, b << block_shift_), std::min(end, (b + 1) << block_shift_));
    }
    return;
  }
  zero_partial(offset, first_full << block_shift_);
  zero_partial(end_full << block_shift_, end);
  map_.ForEach(first_full, end_full, [&](uint64_t b, uint64_t e, const Extent& x) {
    if (x.kind == Kind::kData) data_blocks_ -= e - b;
    return true;
  });
  map_.Assign(first_full, end_full, Extent{kind, nullptr});
}

Task<Status> MemoryVolume::Trim(uint64_t offset, uint64_t length, WriteFlags) {
  std::unique_lock lock(mu_);
  ZeroRangeLocked(offset, length, Kind::kHole);
  co_return Status::Ok();
}

Task<Status> MemoryVolume::WriteZeroes(uint64_t offset, uint64_t length, ZeroFlags flags) {
  std::unique_lock lock(mu_);
  ZeroRangeLocked(offset, length, flags.no_hole ? Kind::kZero : Kind::kHole);
  co_return Status::Ok();
}

Task<Result<std::vector<StatusExtent>>> MemoryVolume::BlockStatus(uint64_t offset,
                                                                   uint64_t length,
                                                                   uint32_t max_extents) {
  std::vector<StatusExtent> out;
  if (length == 0 || max_extents == 0) {
    co_return Status::InvalidArgument("empty block status request");
  }
  const uint64_t end = offset + length;
  auto add = [&](uint64_t from, uint64_t to, bool hole, bool zero) {
    if (from >= to) return;
    if (!out.empty() && out.back().hole == hole && out.back().zero == zero) {
      out.back().length += to - from;
    } else {
      out.push_back({to - from, hole, zero});
    }
  };
  // Collect until one extent past the cap has started: every extent before it is then
  // complete, and the cap drops the partial one.
  std::shared_lock lock(mu_);
  uint64_t cursor = offset;
  map_.ForEach(offset >> block_shift_, ((end - 1) >> block_shift_) + 1,
               [&](uint64_t b, uint64_t e, const Extent& x) {
                 uint64_t from = std::max(offset, b << block_shift_);
                 uint64_t to = std::min(end, e << block_shift_);
                 add(cursor, from, true, true);
                 add(from, to, x.kind == Kind::kHole, x.kind != Kind::kData);
                 cursor = to;
                 return out.size() <= max_extents;
               });
  if (out.size() <= max_extents) add(cursor, end, true, true);
  if (out.size() > max_extents) out.resize(max_extents);
  co_return out;
}

Task<Status> MemoryVolume::Cache(uint64_t, uint64_t) { co_return Status::Ok(); }

uint64_t MemoryVolume::data_blocks() const {
  std::shared_lock lock(mu_);
  return data_blocks_;
}

size_t MemoryVolume::extent_count() const {
  std::shared_lock lock(mu_);
  return map_.size();
}

}  // namespace portal::testing
