// The write path: buffers, read-modify-write of partial blocks, flush waiting.
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }

// The blocks of [offset, end) that the range covers only partly (at most two).
std::vector<uint64_t> EdgeBlocks(uint64_t offset, uint64_t end, uint64_t bs) {
  std::vector<uint64_t> out;
  const uint64_t first = offset / bs, last = (end - 1) / bs;
  auto partial = [&](uint64_t b) {
    return std::max(offset, b * bs) != b * bs || std::min(end, (b + 1) * bs) != (b + 1) * bs;
  };
  if (partial(first)) out.push_back(first);
  if (last != first && partial(last)) out.push_back(last);
  return out;
}
}  // namespace

uint64_t LsmVolume::size_bytes() const { return opened_.size_bytes; }

Status LsmVolume::CheckNotSalvage() const {
  if (!options_.salvage) return Status::Ok();
  return Status::PermissionDenied(fmt::format(
      "the volume is open read-only for salvage (segment {} is missing)", opened_.salvage_gap));
}

Status LsmVolume::CheckWritable() {
  RETURN_IF_ERROR(CheckNotSalvage());
  std::lock_guard lock(mu_);
  if (lifecycle_.fenced) return lifecycle_.FencedError();
  if (give_up_.cancelled()) return GaveUpLocked();
  if (lifecycle_.closing) return Status::Shutdown("volume is closing");
  return Status::Ok();
}

void LsmVolume::NoteDirtyLocked() { uploader_.NoteWrittenLocked(); }

void LsmVolume::BumpStripesLocked(uint64_t first, uint64_t end) {
  if (end - first >= stripes_.size()) {
    for (auto& s : stripes_) ++s;
    return;
  }
  for (uint64_t b = first; b < end; ++b) ++stripes_[b % stripes_.size()];
}

Status LsmVolume::CheckBufferableLocked() const {
  if (lifecycle_.fenced) return lifecycle_.FencedError();
  if (give_up_.cancelled()) return GaveUpLocked();  // nothing uploads it any more
  // The uploader drains what is buffered when stop is set and then exits: nothing may
  // land after that, or a FUA or FLUSH would wait for it forever (dst seeds 5431, 5435).
  if (lifecycle_.stop) return Status::Shutdown("volume is closed");
  return Status::Ok();
}

Status LsmVolume::WriteFullBlocksLocked(uint64_t first, const uint8_t* data, uint64_t n,
                                         const std::shared_ptr<const void>& keep) {
  RETURN_IF_ERROR(CheckBufferableLocked());
  uploader_.ActiveLocked().WriteBlocks(first, data, n, map_.next_seq++, keep);
  BumpStripesLocked(first, first + n);
  NoteDirtyLocked();
  return Status::Ok();
}

Status LsmVolume::WriteZeroRunLocked(uint64_t first, uint64_t end, lsm::LocKind kind) {
  RETURN_IF_ERROR(CheckBufferableLocked());
  uploader_.ActiveLocked().WriteZeroRun(first, end, kind, map_.next_seq++);
  BumpStripesLocked(first, end);
  NoteDirtyLocked();
  return Status::Ok();
}

Task<Status> LsmVolume::WaitForRoom(uint64_t need) {
  // The budget may be shared with other volumes (write_budget.h): reserve `need`, or wait
  // for room. While waiting, push whatever holds the budget to upload (this volume's
  // active buffer, and an idle volume's, which would otherwise keep it), and look at this
  // volume's fence and stop on every wake-up: an upload settling (here or elsewhere), a
  // fence or a give-up wakes the budget. The epoch is sampled before the check, so no
  // wake-up is lost.
  WriteBudget::Waiter waiter(budget_, *budget_account_, need);
  for (;;) {
    const uint64_t seen = budget_.epoch();
    {
      std::lock_guard lock(mu_);
      if (lifecycle_.fenced) co_return lifecycle_.FencedError();
      if (give_up_.cancelled()) co_return GaveUpLocked();
      if (waiter.TryReserve()) {
        if (lifecycle_.stalled) {
          lifecycle_.stalled = false;
          Log()->info("write stall over unflushed_bytes={}", UnflushedBytesLocked());
        }
        co_return Status::Ok();
      }
      if (!lifecycle_.stalled) {
        lifecycle_.stalled = true;
        ++lifecycle_.write_stalls;
        Log()->warn(
            "writes stalled: the write buffers reached max_unflushed_bytes={} (this volume "
            "holds {}; the store is slower than the writes)",
            budget_.limit_bytes(), UnflushedBytesLocked());
      }
    }
    // On every wake-up: a buffer written since the last push is pushed too.
    if (waiter.push()) budget_.PushHolders();
    co_await budget_.Wait(seen);
  }
}

LsmVolume::Reserved::~Reserved() {
  std::lock_guard lock(v->mu_);
  v->UpdateBudgetLocked(bytes);
}

Task<Status> LsmVolume::WritePartial(uint64_t block, uint32_t in_block, const uint8_t* src,
                                     uint32_t len) {
  std::vector<uint8_t> merged(block_size_);
  for (;;) {
    uint64_t version;
    {
      std::lock_guard lock(mu_);
      version = stripes_[block % stripes_.size()];
    }
    CO_RETURN_IF_ERROR(co_await ReadBlocksRaw(block, block + 1, block * block_size_,
                                              std::span(merged.data(), merged.size()), nullptr));
    if (src) {
      std::memcpy(merged.data() + in_block, src, len);
    } else {
      std::memset(merged.data() + in_block, 0, len);
    }
    std::lock_guard lock(mu_);
    CO_RETURN_IF_ERROR(CheckBufferableLocked());
    if (stripes_[block % stripes_.size()] != version) continue;  // raced: read again
    co_return WriteFullBlocksLocked(block, merged.data(), 1);
  }
}

Task<Status> LsmVolume::Write(uint64_t offset, std::span<const uint8_t> data, WriteFlags flags) {
  CO_RETURN_IF_ERROR(CheckWritable());
  if (data.empty()) co_return Status::Ok();
  CO_RETURN_IF_ERROR(co_await EnterWrite());
  struct Leave {
    LsmVolume* v;
    ~Leave() { v->LeaveWrite(); }
  } leave{this};
  const uint64_t bs = block_size_;
  const uint64_t end = offset + data.size();
  const uint64_t first_full = (offset + bs - 1) / bs;
  const uint64_t end_full = end / bs;
  // What the buffer may add: the whole blocks (twice when adopted: the write's own
  // memory, zero blocks included, and copies of its runs too short to adopt), and the
  // read-modify-write of the partial ones.
  const uint64_t full_bytes = first_full < end_full ? (end_full - first_full) * bs : 0;
  const uint64_t need =
      full_bytes * (flags.keep ? 2 : 1) + EdgeBlocks(offset, end, bs).size() * bs;
  CO_RETURN_IF_ERROR(co_await WaitForRoom(need));
  std::optional<Reserved> reserved(std::in_place, this, need);
  if (first_full < end_full) {
    std::lock_guard lock(mu_);
    CO_RETURN_IF_ERROR(WriteFullBlocksLocked(first_full, data.data() + (first_full * bs - offset),
                                             end_full - first_full,
                                             flags.keep ? *flags.keep : nullptr));
  }
  // Only the first and last blocks can be partial.
  for (uint64_t b : EdgeBlocks(offset, end, bs)) {
    uint64_t from = std::max(offset, b * bs), to = std::min(end, (b + 1) * bs);
    CO_RETURN_IF_ERROR(co_await WritePartial(b, static_cast<uint32_t>(from - b * bs),
                                             data.data() + (from - offset),
                                             static_cast<uint32_t>(to - from)));
  }
  reserved.reset();  // buffered: the charge counts it now, not while FUA waits
  if (flags.fua) CO_RETURN_IF_ERROR(co_await Flush());
  co_return Status::Ok();
}

Task<Status> LsmVolume::ZeroRange(uint64_t offset, uint64_t length, lsm::LocKind kind,
                                  bool fua) {
  CO_RETURN_IF_ERROR(CheckWritable());
  if (length == 0) co_return Status::Ok();
  CO_RETURN_IF_ERROR(co_await EnterWrite());
  struct Leave {
    LsmVolume* v;
    ~Leave() { v->LeaveWrite(); }
  } leave{this};
  const uint64_t bs = block_size_;
  const uint64_t end = offset + length;
  const uint64_t first_full = (offset + bs - 1) / bs;
  const uint64_t end_full = end / bs;
  // Zero runs take no memory; the partial blocks are written as data.
  const uint64_t need = EdgeBlocks(offset, end, bs).size() * bs;
  CO_RETURN_IF_ERROR(co_await WaitForRoom(need));
  std::optional<Reserved> reserved(std::in_place, this, need);
  if (first_full < end_full) {
    std::lock_guard lock(mu_);
    CO_RETURN_IF_ERROR(WriteZeroRunLocked(first_full, end_full, kind));
  }
  for (uint64_t b : EdgeBlocks(offset, end, bs)) {
    uint64_t from = std::max(offset, b * bs), to = std::min(end, (b + 1) * bs);
    CO_RETURN_IF_ERROR(co_await WritePartial(b, static_cast<uint32_t>(from - b * bs), nullptr,
                                             static_cast<uint32_t>(to - from)));
  }
  reserved.reset();  // buffered: the charge counts it now, not while FUA waits
  if (fua) CO_RETURN_IF_ERROR(co_await Flush());
  co_return Status::Ok();
}

Task<Status> LsmVolume::Trim(uint64_t offset, uint64_t length, WriteFlags flags) {
  co_return co_await ZeroRange(offset, length, lsm::LocKind::kHole, flags.fua);
}

Task<Status> LsmVolume::WriteZeroes(uint64_t offset, uint64_t length, ZeroFlags flags) {
  // Zeroing is always a metadata-only run here, so FAST_ZERO never needs refusing.
  co_return co_await ZeroRange(offset, length,
                               flags.no_hole ? lsm::LocKind::kZero : lsm::LocKind::kHole,
                               flags.fua);
}

Task<Status> LsmVolume::Flush() {
  uint64_t target;
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.fenced) co_return lifecycle_.FencedError();
    if (give_up_.cancelled() && !uploader_.EmptyLocked()) co_return GaveUpLocked();
    target = uploader_.FlushTargetLocked();
    if (target == 0) co_return Status::Ok();  // nothing unflushed
  }
  uploader_.Wake();
  // Ok once the uploader settled the segment of `target` and applied it (Uploader::Run
  // marks it durable); the fence's or the give-up's error once nothing can settle
  // (FenceLocked, GiveUpNow).
  co_return co_await uploader_.durable().AwaitDurable(target);
}

}  // namespace portal::volume
