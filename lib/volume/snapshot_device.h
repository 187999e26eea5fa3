// SnapshotDevice: a read-only BlockDevice over one snapshot of an LsmVolume (the NBD
// export "portalbd@NAME"). While it exists the snapshot counts as attached, and
// deleting it is refused. Writes fail with PermissionDenied (EPERM).
#pragma once

#include <memory>

#include "volume/lsm_volume.h"

namespace portal::volume {

class SnapshotDevice final : public BlockDevice {
 public:
  SnapshotDevice(std::shared_ptr<LsmVolume> volume, std::shared_ptr<LsmVolume::SnapDetail> detail)
      : volume_(std::move(volume)), detail_(std::move(detail)) {}
  ~SnapshotDevice() override { volume_->Detach(detail_); }

  uint64_t size_bytes() const override { return detail_->object.size_bytes; }
  uint32_t block_size() const override { return volume_->block_size(); }
  bool read_only() const override { return true; }

  Task<Status> Read(uint64_t offset, std::span<uint8_t> out,
                    std::vector<ByteRange>* zeroes) override;
  Task<Status> Write(uint64_t, std::span<const uint8_t>, WriteFlags) override;
  Task<Status> Flush() override;
  Task<Status> Trim(uint64_t, uint64_t, WriteFlags) override;
  Task<Status> WriteZeroes(uint64_t, uint64_t, ZeroFlags) override;
  Task<Result<std::vector<StatusExtent>>> BlockStatus(uint64_t offset, uint64_t length,
                                                       uint32_t max_extents) override;
  Task<Status> Cache(uint64_t, uint64_t) override;

 private:
  std::shared_ptr<LsmVolume> volume_;
  std::shared_ptr<LsmVolume::SnapDetail> detail_;
};

}  // namespace portal::volume
