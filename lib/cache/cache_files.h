// CacheFiles: where the disk cache (disk_cache.h) keeps its entries: named files in one
// directory, each written whole. DirectoryFiles is the real one (a local directory);
// the simulator has its own (dst/sim_cache_files.h) that damages reads and fills up.
//
// Every method may block: the disk cache calls them on the Env's blocking pool, never on
// the executor. Implementations are thread-safe. Nothing here is authoritative: any
// error costs a GET later, never data.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::cache {

class CacheFiles {
 public:
  struct FileInfo {
    std::string name;
    uint64_t size = 0;
    int64_t mtime_ns = 0;  // orders the index rebuilt at start (oldest evicted first)
  };
  virtual ~CacheFiles() = default;

  // Makes the directory ready for use by this process alone (creates it, takes its lock)
  // and removes what a crash left half written. An error leaves the cache off.
  virtual Status Open() = 0;
  // Every complete entry.
  virtual Result<std::vector<FileInfo>> List() = 0;
  // The whole file; NotFound when it is not there.
  virtual Result<std::string> Read(const std::string& name) = 0;
  // The same into `*out`, whose memory is reused (resized to the file's length): reading
  // many entries through one buffer spares a fresh allocation, its page faults and its
  // zeroing per entry. By default, Read.
  virtual Status ReadInto(const std::string& name, std::string* out) {
    Result<std::string> r = Read(name);
    if (!r.ok()) return r.status();
    *out = std::move(*r);
    return Status::Ok();
  }
  // The file's first head.size() bytes into `head` and the next body.size() into `body`,
  // straight into the caller's memory (the disk cache reads a chunk into the NBD reply
  // this way: no buffer between the page cache and the reply). Returns the file's length
  // if it is at most head.size() + body.size(), or that sum + 1 for a longer file, so that
  // a caller expecting an exact length sees any other as a mismatch. Bytes of `head` and
  // `body` past a shorter file's end are undefined. NotFound when it is not there. By
  // default, Read and two copies.
  virtual Result<uint64_t> ReadSplit(const std::string& name, std::span<uint8_t> head,
                                     std::span<uint8_t> body) {
    Result<std::string> r = Read(name);
    if (!r.ok()) return r.status();
    std::string_view f = *r;
    const size_t h = std::min(head.size(), f.size());
    std::copy_n(f.data(), h, head.data());
    f.remove_prefix(h);
    std::copy_n(f.data(), std::min(body.size(), f.size()), body.data());
    return std::min<uint64_t>(r->size(), head.size() + body.size() + 1);
  }
  // ReadSplit only if no disk I/O is needed (the page cache holds the file): Busy when it
  // would wait for the disk. For a caller that may not block (the executor), which then
  // reads on the blocking pool. By default always Busy.
  virtual Result<uint64_t> ReadSplitCached(const std::string& name, std::span<uint8_t> head,
                                           std::span<uint8_t> body) {
    (void)name, (void)head, (void)body;
    return Status::Busy("not known to be cached");
  }
  // Creates or replaces `name` with `data`, atomically for readers (no reader sees a
  // half-written file). Not synced: a crash may lose or tear it, which a read detects.
  virtual Status Write(const std::string& name, std::string_view data) = 0;
  virtual Status Remove(const std::string& name) = 0;
  // For log lines ("/var/lib/portalbd/chunks").
  virtual std::string Describe() const = 0;
};

// The files of `dir` (created if missing), locked against a second portalbd with flock
// on dir/LOCK. Entries are written as NAME.tmp and renamed.
std::unique_ptr<CacheFiles> DirectoryFiles(std::string dir);

}  // namespace portal::cache
