// The filesystem steps of staging, publishing and expanding a volume, as commands on a
// NodeHost: what a device holds (blkid), mkfs of a blank one, mount, bind mounts, umount
// and online growth. Each returns a Status whose message names the command and its output.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "csi/node_host.h"
#include "util/status.h"

namespace portal::csi {

inline constexpr std::string_view kDefaultFsType = "ext4";

// What a device holds.
struct DeviceContent {
  bool blank = false;   // nothing blkid knows, and its first MiB all zeroes
  std::string fs_type;  // blkid's TYPE ("ext4", "xfs"), "" if none
  std::string other;    // something that is not a filesystem ("PTTYPE=gpt", "data")
};

// blkid -p (low-level probe, no cache), then the first MiB: a device is blank only when
// blkid finds nothing and no byte was ever written there, so raw data written through a
// block volume is never taken for an empty disk and formatted.
Result<DeviceContent> ProbeDevice(NodeHost& host, const std::string& device);

// fs_type names a program (mkfs.<fs_type>): 1..16 of [a-z0-9]. InvalidArgument otherwise,
// or when mkfs.<fs_type> is not installed here.
Status CheckFsType(NodeHost& host, std::string_view fs_type);

// mkfs.<fs_type> on a device ProbeDevice found blank.
Status Format(NodeHost& host, const std::string& device, std::string_view fs_type);

// mount -t FS [-o FLAGS] DEVICE TARGET
Status MountDevice(NodeHost& host, const std::string& device, const std::string& target,
                   std::string_view fs_type, const std::vector<std::string>& flags);
// mount --bind SOURCE TARGET, then remount it read-only when asked (a bind mount ignores
// "ro" on the first call with older util-linux, so the remount is explicit).
Status BindMount(NodeHost& host, const std::string& source, const std::string& target,
                 bool read_only);
// umount TARGET.
Status Unmount(NodeHost& host, const std::string& target);

// Grows the filesystem mounted at `mount_point` from `device` to the device's size,
// online: resize2fs for ext2/3/4, xfs_growfs for xfs, btrfs filesystem resize for btrfs.
// InvalidArgument for another type.
Status GrowFilesystem(NodeHost& host, std::string_view fs_type, const std::string& device,
                      const std::string& mount_point);

}  // namespace portal::csi
