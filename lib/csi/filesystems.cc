#include "csi/filesystems.h"

#include <fmt/format.h>

#include <algorithm>

namespace portal::csi {
namespace {

constexpr size_t kBlankCheckBytes = 1 << 20;

Status RunOk(NodeHost& host, const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(CommandResult r, host.Run(argv));
  if (r.exit_code != 0) return Status::IOError(DescribeFailure(argv, r));
  return Status::Ok();
}

}  // namespace

Result<DeviceContent> ProbeDevice(NodeHost& host, const std::string& device) {
  const std::vector<std::string> argv = {"blkid", "-p", "-o", "export", device};
  ASSIGN_OR_RETURN(CommandResult r, host.Run(argv));
  DeviceContent content;
  if (r.exit_code == 0) {
    // KEY=VALUE lines: TYPE for a filesystem, PTTYPE for a partition table, ...
    std::string_view out = r.output;
    while (!out.empty()) {
      const size_t nl = out.find('\n');
      const std::string_view line = out.substr(0, nl);
      out = nl == std::string_view::npos ? std::string_view() : out.substr(nl + 1);
      if (line.rfind("TYPE=", 0) == 0) content.fs_type = std::string(line.substr(5));
      if (line.rfind("PTTYPE=", 0) == 0) content.other = std::string(line);
    }
    if (content.fs_type.empty() && content.other.empty()) content.other = "blkid: " + r.output;
    return content;
  }
  if (r.exit_code != 2) return Status::IOError(DescribeFailure(argv, r));
  // blkid found nothing. Anything written in the first MiB still says "not blank".
  ASSIGN_OR_RETURN(std::string head, host.ReadHead(device, kBlankCheckBytes));
  if (std::all_of(head.begin(), head.end(), [](char c) { return c == 0; })) {
    content.blank = true;
  } else {
    content.other = "data that is not a filesystem blkid knows";
  }
  return content;
}

Status CheckFsType(NodeHost& host, std::string_view fs_type) {
  const bool name_ok = !fs_type.empty() && fs_type.size() <= 16 &&
                       std::all_of(fs_type.begin(), fs_type.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                       });
  if (!name_ok) {
    return Status::InvalidArgument(
        fmt::format("fs_type '{}' is not a filesystem name (1 to 16 of a-z, 0-9)", fs_type));
  }
  if (!host.Installed("mkfs." + std::string(fs_type))) {
    return Status::InvalidArgument(
        fmt::format("fs_type '{}': mkfs.{} is not installed on this node", fs_type, fs_type));
  }
  return Status::Ok();
}

Status Format(NodeHost& host, const std::string& device, std::string_view fs_type) {
  std::vector<std::string> argv = {"mkfs." + std::string(fs_type)};
  // mke2fs asks before writing over a whole disk unless forced; the device was just
  // probed blank, so there is nothing to protect.
  if (fs_type == "ext2" || fs_type == "ext3" || fs_type == "ext4") argv.push_back("-F");
  argv.push_back(device);
  return RunOk(host, argv);
}

Status MountDevice(NodeHost& host, const std::string& device, const std::string& target,
                   std::string_view fs_type, const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {"mount", "-t", std::string(fs_type)};
  std::string options;
  for (const auto& f : flags) {
    if (f.empty()) continue;
    options += (options.empty() ? "" : ",") + f;
  }
  if (!options.empty()) {
    argv.push_back("-o");
    argv.push_back(options);
  }
  argv.push_back(device);
  argv.push_back(target);
  return RunOk(host, argv);
}

Status BindMount(NodeHost& host, const std::string& source, const std::string& target,
                 bool read_only) {
  RETURN_IF_ERROR(RunOk(host, {"mount", "--bind", source, target}));
  if (!read_only) return Status::Ok();
  Status s = RunOk(host, {"mount", "-o", "remount,bind,ro", target});
  if (!s.ok()) {
    // Never leave a writable mount where a read-only one was asked for.
    (void)RunOk(host, {"umount", target});
  }
  return s;
}

Status Unmount(NodeHost& host, const std::string& target) {
  return RunOk(host, {"umount", target});
}

Status GrowFilesystem(NodeHost& host, std::string_view fs_type, const std::string& device,
                      const std::string& mount_point) {
  if (fs_type == "ext2" || fs_type == "ext3" || fs_type == "ext4") {
    return RunOk(host, {"resize2fs", device});
  }
  if (fs_type == "xfs") return RunOk(host, {"xfs_growfs", mount_point});
  if (fs_type == "btrfs") return RunOk(host, {"btrfs", "filesystem", "resize", "max", mount_point});
  return Status::InvalidArgument(
      fmt::format("cannot grow a {} filesystem online (ext2/3/4, xfs and btrfs can)", fs_type));
}

}  // namespace portal::csi
