#include "volume/snapshot_device.h"

namespace portal::volume {
namespace {
Status ReadOnly() { return Status::PermissionDenied("snapshots are read-only"); }
}  // namespace

Task<Status> SnapshotDevice::Read(uint64_t offset, std::span<uint8_t> out,
                                  std::vector<ByteRange>* zeroes) {
  if (out.empty()) co_return Status::Ok();
  const uint64_t bs = volume_->block_size();
  co_return co_await volume_->ReadBlocksRaw(offset / bs, (offset + out.size() + bs - 1) / bs,
                                            offset, out, zeroes, &detail_->object.levels);
}

Task<Status> SnapshotDevice::Write(uint64_t, std::span<const uint8_t>, WriteFlags) {
  co_return ReadOnly();
}
Task<Status> SnapshotDevice::Flush() { co_return Status::Ok(); }
Task<Status> SnapshotDevice::Trim(uint64_t, uint64_t, WriteFlags) { co_return ReadOnly(); }
Task<Status> SnapshotDevice::WriteZeroes(uint64_t, uint64_t, ZeroFlags) { co_return ReadOnly(); }

Task<Result<std::vector<StatusExtent>>> SnapshotDevice::BlockStatus(uint64_t offset,
                                                                     uint64_t length,
                                                                     uint32_t max_extents) {
  co_return co_await volume_->StatusOf(offset, length, max_extents, &detail_->object.levels);
}

Task<Status> SnapshotDevice::Cache(uint64_t, uint64_t) { co_return Status::Ok(); }

}  // namespace portal::volume
