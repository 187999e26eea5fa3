// Resize: the device size is the manifest's size_bytes; changing it is one commit.
#include <fmt/format.h>

#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
constexpr uint64_t kMaxSizeBytes = uint64_t{1} << 63;
}  // namespace

Task<Status> LsmVolume::Resize(uint64_t size_bytes, bool allow_shrink) {
  if (options_.salvage) co_return Status::NotSupported("the volume is open read-only (salvage)");
  if (size_bytes == 0 || size_bytes % block_size_ != 0 || size_bytes > kMaxSizeBytes) {
    co_return Status::InvalidArgument(fmt::format(
        "size {} is not a positive multiple of the block size {} up to 2^63", size_bytes,
        block_size_));
  }
  const uint64_t old_size = this->size_bytes();
  if (size_bytes == old_size) co_return Status::Ok();
  if (size_bytes < old_size) {
    if (!allow_shrink) {
      co_return Status::InvalidArgument(fmt::format(
          "refusing to shrink from {} to {} bytes (data past the new end would be lost)",
          old_size, size_bytes));
    }
    // Cut-off blocks become holes, durably, before the manifest says the device ends
    // earlier: a later grow must show zeroes there. A crash in between leaves the size
    // unchanged and the tail trimmed, which the caller asked for anyway.
    CO_RETURN_IF_ERROR(co_await Trim(size_bytes, old_size - size_bytes, WriteFlags{.fua = true}));
  }
  // Under jobs_mu_ no other commit runs, so head_ carries the new size into exactly one
  // manifest, and back out if that commit fails.
  auto guard = co_await jobs_mu_.Lock();
  if (size_bytes < old_size) {
    // Into the map (an SST, applied_segment past the trim) before the size shrinks: an
    // open replays segments past applied_segment and refuses one that maps blocks past
    // the device end, as the trim's segment does.
    CO_RETURN_IF_ERROR(co_await FlushMemtableLocked());
  }
  lsm::VersionEdit edit;
  {
    std::lock_guard lock(mu_);
    edit.base = versions_.current()->number;
    head_.size_bytes = size_bytes;
  }
  Status st = co_await Commit(edit);
  if (!st.ok()) {
    std::lock_guard lock(mu_);
    head_.size_bytes = old_size;
    co_return st;
  }
  opened_.size_bytes = size_bytes;
  Log()->info("resized volume from {} to {} bytes url={}", old_size, size_bytes, store_.url());
  co_return Status::Ok();
}

}  // namespace portal::volume
