// NodeHost: where the Node service meets the machine: the commands it runs (blkid, mkfs,
// mount, umount, the filesystem growers), the mount table, and the kernel's NBD devices.
// Behind an interface so unit tests check the exact argv and script the kernel's answers
// without root and without a device; RealNodeHost is the real one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "csi/mount_table.h"
#include "util/status.h"

namespace portal::csi {

struct CommandResult {
  int exit_code = 0;   // 128 + signal when killed by one
  std::string output;  // stdout then stderr, at most the last 64 KiB of each
};

// A /dev/nbdN the kernel has.
struct NbdSlot {
  std::string path;     // "/dev/nbd3"
  bool in_use = false;  // connected (a pid or a size in sysfs)
};

class NodeHost {
 public:
  virtual ~NodeHost() = default;
  // Runs argv (argv[0] looked up on PATH) to completion with stdin on /dev/null. An error
  // Status only when it could not run at all (not installed: NotFound); a non-zero exit
  // is a result, for the caller to judge.
  virtual Result<CommandResult> Run(const std::vector<std::string>& argv) = 0;
  // True when `program` is an executable on PATH (mkfs.<fs_type> before formatting).
  virtual bool Installed(std::string_view program) = 0;
  virtual Result<std::vector<MountEntry>> Mounts() = 0;
  // The first `bytes` bytes of a block device (fewer if it is smaller).
  virtual Result<std::string> ReadHead(const std::string& device, size_t bytes) = 0;
  // The size the kernel gives a block device now (/sys/class/block/NAME/size).
  virtual Result<uint64_t> DeviceSizeBytes(const std::string& device) = 0;
  // Every /sys/block/nbdN.
  virtual Result<std::vector<NbdSlot>> NbdDevices() = 0;
};

// The real host. Commands run through posix_spawnp (safe in gRPC's threads), both pipes
// read until the child exits. No timeout: mkfs of a large volume takes what it takes, and
// the CO bounds the call with its own deadline and retries.
class RealNodeHost final : public NodeHost {
 public:
  Result<CommandResult> Run(const std::vector<std::string>& argv) override;
  bool Installed(std::string_view program) override;
  Result<std::vector<MountEntry>> Mounts() override { return ReadMountTable(); }
  Result<std::string> ReadHead(const std::string& device, size_t bytes) override;
  Result<uint64_t> DeviceSizeBytes(const std::string& device) override;
  Result<std::vector<NbdSlot>> NbdDevices() override;
};

// "mount -t ext4 /dev/nbd0 /x: exit 32: mount: wrong fs type..." for error messages.
std::string DescribeFailure(const std::vector<std::string>& argv, const CommandResult& result);

}  // namespace portal::csi
