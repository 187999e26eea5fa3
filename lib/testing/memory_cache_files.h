// MemoryCacheFiles: the disk cache's files in memory, for tests and the simulator, with
// the faults a local disk produces: it fills up (NoSpace past `disk_bytes`), is mounted
// read-only (PermissionDenied on every write), and returns damaged reads (`on_read` may
// flip bits in, tear or truncate what a Read returns). The files themselves survive the
// DiskCache over them (a restart): hand the same `Disk` to the next one.
//
// Thread-safe (one mutex); `on_read` runs under it and must not call back.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cache/cache_files.h"

namespace portal::testing {

class MemoryCacheFiles final : public cache::CacheFiles {
 public:
  struct Disk {
    std::mutex mu;
    std::map<std::string, std::pair<std::string, int64_t>> files;  // name -> bytes, mtime
    int64_t clock = 0;                                             // mtimes: a write counter
    uint64_t disk_bytes = UINT64_MAX;  // writes past this many stored bytes fail (full)
    bool read_only = false;
    uint64_t reads = 0, writes = 0;
    // Damages a read in place (the simulator's fault hook); null: reads are clean.
    std::function<void(const std::string& name, std::string* bytes)> on_read;
    uint64_t used_bytes = 0;  // the files' total size
    uint64_t used() const { return used_bytes; }
    void Clear() {
      files.clear();
      used_bytes = 0;
    }
  };

  explicit MemoryCacheFiles(std::shared_ptr<Disk> disk) : disk_(std::move(disk)) {}

  Status Open() override { return Status::Ok(); }
  Result<std::vector<FileInfo>> List() override {
    std::lock_guard lock(disk_->mu);
    std::vector<FileInfo> out;
    for (const auto& [name, f] : disk_->files) out.push_back({name, f.first.size(), f.second});
    return out;
  }
  Result<std::string> Read(const std::string& name) override {
    std::lock_guard lock(disk_->mu);
    ++disk_->reads;
    auto it = disk_->files.find(name);
    if (it == disk_->files.end()) return Status::NotFound(name);
    std::string bytes = it->second.first;
    if (disk_->on_read) disk_->on_read(name, &bytes);
    return bytes;
  }
  Status Write(const std::string& name, std::string_view data) override {
    std::lock_guard lock(disk_->mu);
    if (disk_->read_only) return Status::PermissionDenied("read-only file system");
    uint64_t used = disk_->used();
    auto it = disk_->files.find(name);
    if (it != disk_->files.end()) used -= it->second.first.size();
    if (used + data.size() > disk_->disk_bytes) return Status::NoSpace("no space left on device");
    ++disk_->writes;
    auto& f = disk_->files[name];
    disk_->used_bytes += data.size() - f.first.size();
    f = {std::string(data), ++disk_->clock};
    return Status::Ok();
  }
  Status Remove(const std::string& name) override {
    std::lock_guard lock(disk_->mu);
    auto it = disk_->files.find(name);
    if (it == disk_->files.end()) return Status::Ok();
    disk_->used_bytes -= it->second.first.size();
    disk_->files.erase(it);
    return Status::Ok();
  }
  std::string Describe() const override { return "memory"; }

 private:
  std::shared_ptr<Disk> disk_;
};

}  // namespace portal::testing
