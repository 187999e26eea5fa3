// DiskCache: chunk bytes on local disk ([cache] dir, bounded by disk_size_bytes), shared
// by every volume of the daemon, kept across restarts, never authoritative.
//
// - One file per entry (cache_files.h), named by a hash of its key (16 hex digits). The
//   index (that hash -> size, in LRU order) lives in memory and is rebuilt at Load() from
//   the directory listing, oldest file first (files not named so are left alone): a restart
//   keeps what was cached, eviction is one unlink.
// - Callers key entries by what identifies the bytes for good (the volume layer uses the
//   store, volume uuid, segment id, chunk, the writer's epoch and the footer's checksum of
//   the chunk), and give the expected checksum again on every Get: an entry whose bytes
//   do not hash to it (damage, a torn write, a file from another writer or from before a
//   restore) is dropped and reported as a miss, never returned. Deleting the directory
//   loses nothing.
// - Any write error (disk full, read-only, directory gone) turns the cache off for the
//   rest of the process with one log line; reads and writes of the volume go on.
// - All file I/O that may wait for the disk runs on the Env's blocking pool (ReadMany
//   reads what the page cache holds on the caller's thread). Puts are fire-and-forget,
//   bounded by kMaxPendingBytes of payload waiting to be written (beyond it they are
//   dropped).
//
// Thread-safe. The Env must outlive the cache; work queued on the blocking pool holds
// the cache's state alive by itself.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/cache_files.h"
#include "env/env.h"
#include "env/task.h"

namespace portal::cache {

struct DiskCacheStats {
  bool enabled = false;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t damaged = 0;  // entries that failed verification on a Get, dropped
  uint64_t inserts = 0;  // entries written
  uint64_t dropped = 0;  // puts not written: over the pending bound, or already present
  uint64_t evictions = 0;
  uint64_t usage_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t entries = 0;
};

class DiskCache {
 public:
  static constexpr uint64_t kMaxPendingBytes = 64ull << 20;

  DiskCache(Env& env, std::unique_ptr<CacheFiles> files, uint64_t capacity_bytes);
  ~DiskCache();
  DiskCache(const DiskCache&) = delete;
  DiskCache& operator=(const DiskCache&) = delete;

  // Opens the directory and rebuilds the index (evicting down to the capacity). Until it
  // has finished every Get misses and every Put is dropped; if it fails the cache is off
  // (one log line).
  Task<void> Load();

  // The bytes stored for `key`, if present and they hash (Checksum64) to `checksum` and
  // are `size` bytes long; anything else is a miss (damaged entries are removed).
  Task<std::optional<std::string>> Get(std::string key, uint64_t checksum, uint64_t size);
  // Get for each item, in order, with the files read and verified one after another in
  // one job on the blocking pool: a run of chunks costs one trip there and back, not one
  // per chunk (a thread hand-off each way costs more than reading 64 KiB from the page
  // cache). Items not in the index are misses without any I/O.
  struct GetItem {
    std::string key;
    uint64_t checksum = 0;
    uint64_t size = 0;
  };
  Task<std::vector<std::optional<std::string>>> GetMany(std::vector<GetItem> items);
  // GetMany into the caller's memory: each present entry's payload is read straight into
  // `dest` (`size` bytes, which must stay valid until this completes) and hashed there,
  // with no buffer in between; the result says which items hit. Entries the page cache
  // holds are read on the calling thread (CacheFiles::ReadSplitCached; a trip to the
  // blocking pool and back costs more than reading them), the rest on the pool. A miss leaves its
  // `dest` bytes undefined (possibly an entry's damaged bytes): the caller must not use
  // them. Same verification, eviction and counters as GetMany.
  struct ReadItem {
    std::string key;
    uint64_t checksum = 0;
    uint64_t size = 0;
    uint8_t* dest = nullptr;
  };
  Task<std::vector<bool>> ReadMany(std::vector<ReadItem> items);
  // Whether an entry for `key` is stored (no I/O, no verification, no counters): a read
  // can find it here rather than fetching it ahead of time.
  bool Contains(const std::string& key) const;

  // Stores entries in the background. `payload(i)` makes item i's bytes; it runs on the
  // blocking pool (so it may copy megabytes) and must stay valid until then. An item whose
  // payload does not hash to its checksum, or is not its size, is not stored.
  struct PutItem {
    std::string key;
    uint64_t checksum = 0;
    uint64_t size = 0;
  };
  void Put(std::vector<PutItem> items, std::function<std::string(size_t)> payload);
  void Put(std::string key, uint64_t checksum, std::string bytes);

  bool enabled() const;
  DiskCacheStats stats() const;
  // Every queued Put and eviction done (tests).
  Task<void> Drain();

 private:
  struct State;
  struct ReadRef {
    const std::string* key;
    uint64_t checksum = 0;
    uint64_t size = 0;
  };
  // The one lookup of GetMany and ReadMany: finds each item in the index, then runs
  // `read(i, file name, cached_only)` for the present ones in one job on the blocking
  // pool; `read` says whether the entry verified (an error: it could not be read).
  // `cached_first`: first on the calling thread with cached_only set, as long as `read`
  // does not answer Busy (it would wait for the disk). Counts hits and misses; drops
  // from the index, and removes, what did not verify.
  Task<void> ReadEach(const std::vector<ReadRef>& items,
                      std::function<Result<bool>(size_t, const std::string&, bool)> read,
                      bool cached_first = false);
  Env& env_;
  std::shared_ptr<State> state_;
};

}  // namespace portal::cache
