// Fakes for the Node service's unit tests: a scripted portalbd daemon and a host whose
// mount/umount commands edit a mount table the way the kernel would.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "csi/node_daemon.h"
#include "csi/node_host.h"

namespace portal::csi::testing {

class FakeDaemon final : public NodeDaemon {
 public:
  std::set<std::string> volumes;  // volumes the store has
  std::map<std::string, AttachedDevice> attached;
  std::vector<std::string> calls;  // "attach v", "detach v", "release v", ...
  bool fenced = false;

  Status Open(const std::string& volume) override {
    calls.push_back("open " + volume);
    if (!volumes.count(volume)) return Status::NotFound("no volume named '" + volume + "'");
    return Status::Ok();
  }
  Result<AttachedDevice> Attach(const std::string& volume, bool read_only) override {
    calls.push_back("attach " + volume);
    if (!volumes.count(volume)) return Status::NotFound("no export named '" + volume + "'");
    if (auto it = attached.find(volume); it != attached.end()) return it->second;
    // The lowest free device, as the kernel's netlink NBD hands them out.
    auto taken = [&](int n) {
      for (const auto& [v, d] : attached) {
        if (d.path == "/dev/nbd" + std::to_string(n)) return true;
      }
      return false;
    };
    int n = 0;
    while (taken(n)) ++n;
    AttachedDevice d{"/dev/nbd" + std::to_string(n), volume, 1 << 30, read_only};
    attached[volume] = d;
    return d;
  }
  Status Detach(const std::string& volume) override {
    calls.push_back("detach " + volume);
    attached.erase(volume);
    return Status::Ok();
  }
  Result<std::vector<AttachedDevice>> List() override {
    std::vector<AttachedDevice> out;
    for (const auto& [v, d] : attached) out.push_back(d);
    return out;
  }
  Status Release(const std::string& volume) override {
    calls.push_back("release " + volume);
    return Status::Ok();
  }
  Result<bool> Fenced(const std::string&) override { return fenced; }
};

class FakeHost final : public NodeHost {
 public:
  std::vector<std::vector<std::string>> commands;  // every argv run, in order
  std::vector<MountEntry> mounts;
  std::set<std::string> installed = {"mkfs.ext4", "mkfs.xfs"};
  std::map<std::string, std::string> fs_on;  // device -> filesystem blkid finds
  std::map<std::string, std::string> heads;  // device -> its first bytes (default zeros)
  std::map<std::string, uint64_t> sizes;     // device -> kernel size (default 1 GiB)
  std::vector<NbdSlot> nbd;
  std::function<void(const std::vector<std::string>&)> on_run;  // runs before each command

  Result<CommandResult> Run(const std::vector<std::string>& argv) override {
    commands.push_back(argv);
    if (on_run) on_run(argv);
    const std::string& prog = argv[0];
    if (prog == "blkid") {
      auto it = fs_on.find(argv.back());
      if (it == fs_on.end()) return CommandResult{2, ""};
      return CommandResult{0, "DEVNAME=" + argv.back() + "\nTYPE=" + it->second + "\n"};
    }
    if (prog.rfind("mkfs.", 0) == 0) {
      fs_on[argv.back()] = prog.substr(5);
      return CommandResult{0, ""};
    }
    if (prog == "mount") return Mount(argv);
    if (prog == "umount") {
      for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
        if (it->mount_point == argv[1]) {
          mounts.erase(std::next(it).base());
          return CommandResult{0, ""};
        }
      }
      return CommandResult{32, "umount: " + argv[1] + ": not mounted."};
    }
    return CommandResult{0, ""};  // resize2fs, xfs_growfs
  }
  bool Installed(std::string_view program) override {
    return installed.count(std::string(program));
  }
  Result<std::vector<MountEntry>> Mounts() override { return mounts; }
  Result<std::string> ReadHead(const std::string& device, size_t bytes) override {
    if (auto it = heads.find(device); it != heads.end()) return it->second;
    return std::string(bytes, '\0');
  }
  Result<uint64_t> DeviceSizeBytes(const std::string& device) override {
    if (auto it = sizes.find(device); it != sizes.end()) return it->second;
    return uint64_t{1} << 30;
  }
  Result<std::vector<NbdSlot>> NbdDevices() override { return nbd; }

  // Commands run since the last call, each joined by spaces.
  std::vector<std::string> TakeCommands() {
    std::vector<std::string> out;
    for (const auto& argv : commands) {
      std::string s;
      for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
      out.push_back(s);
    }
    commands.clear();
    return out;
  }

 private:
  Result<CommandResult> Mount(const std::vector<std::string>& argv) {
    if (argv[1] == "--bind") {  // mount --bind SRC DST
      MountEntry e;
      if (argv[2].rfind("/dev/", 0) == 0) {
        e = {argv[2].substr(4), argv[3], "rw", "devtmpfs", "udev"};
      } else {
        const MountEntry* src = nullptr;
        for (const auto& m : mounts)
          if (m.mount_point == argv[2]) src = &m;
        if (!src) return CommandResult{32, "not a mount"};
        e = *src;
        e.mount_point = argv[3];
      }
      mounts.push_back(e);
      return CommandResult{0, ""};
    }
    if (argv[1] == "-o" && argv[2].rfind("remount", 0) == 0) {
      for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
        if (it->mount_point == argv[3]) {
          it->options = "ro";
          return CommandResult{0, ""};
        }
      }
      return CommandResult{32, "not mounted"};
    }
    // mount -t FS [-o OPTS] DEV TARGET
    const std::string dev = argv[argv.size() - 2];
    auto fs = fs_on.find(dev);
    if (fs == fs_on.end() || fs->second != argv[2]) return CommandResult{32, "wrong fs type"};
    std::string opts = "rw";
    if (argv[3] == "-o" && MountEntry{"", "", argv[4], "", ""}.read_only()) opts = "ro";
    mounts.push_back({"/", argv.back(), opts, argv[2], dev});
    return CommandResult{0, ""};
  }
};

}  // namespace portal::csi::testing
