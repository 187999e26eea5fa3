// The kernel's mount table (/proc/self/mountinfo) as the Node service needs it: what is
// mounted at a path, from which device, with which options. Parsing is separate from
// reading so unit tests feed it text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::csi {

// One line of mountinfo (proc(5)): escapes (\040 for a space, ...) decoded.
struct MountEntry {
  std::string root;         // the mounted subtree of its filesystem: "/" or "/nbd0" (a bind)
  std::string mount_point;  // absolute
  std::string options;      // per-mount options: "rw,relatime"
  std::string fs_type;      // "ext4", "devtmpfs"
  std::string source;       // "/dev/nbd0", "udev"
  bool read_only() const;   // "ro" among the per-mount options
};

// Lines that do not parse are skipped (the kernel writes none).
std::vector<MountEntry> ParseMountInfo(std::string_view text);
// Reads /proc/self/mountinfo.
Result<std::vector<MountEntry>> ReadMountTable();

// The mount visible at `path` (the last one mounted there), or nullptr. `path` is
// compared after lexical normalization, so "/a/b/" and "/a//b" name "/a/b".
const MountEntry* MountAt(const std::vector<MountEntry>& mounts, std::string_view path);

// True when `entry` shows block device `device` ("/dev/nbd3"): a filesystem on it, or the
// device node itself bind-mounted from devtmpfs (a block volume's published file).
bool MountShowsDevice(const MountEntry& entry, std::string_view device);
// True when `entry` is the device node itself bind-mounted (block volumes).
bool IsDeviceBind(const MountEntry& entry, std::string_view device);

// "/a/b" for "/a/b/", "/a//b", "/a/./b"; "" for a relative or empty path.
std::string NormalPath(std::string_view path);

}  // namespace portal::csi
