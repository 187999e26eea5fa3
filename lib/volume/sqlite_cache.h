// SqliteCache: the PersistentCache of a volume in `[storage] cache_dir` (one SQLite file,
// portalbd-cache.sqlite), or an in-memory database when cache_dir is empty (memory://).
//
// Rows are keyed by volume uuid (SetVolume) and object key, so one cache file can serve
// several volumes and a wiped bucket can never feed a new volume stale bytes. The latest
// manifest number is kept per store URL as a hint for open (validated by probing).
//
// All SQLite calls run on the Env's blocking pool. Any SQLite error disables the cache
// (logged once): it is an accelerator, never a dependency. This file is the only place
// SQLite result codes become Status. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cache/persistent_cache.h"
#include "env/env.h"

struct sqlite3;

namespace portal::volume {

class SqliteCache final : public cache::PersistentCache {
 public:
  // Never fails: on error the cache is disabled and every Get misses.
  static std::unique_ptr<SqliteCache> Open(Env& env, const std::string& cache_dir,
                                           const std::string& store_url);
  ~SqliteCache() override;

  void SetVolume(const std::string& volume_uuid);
  bool enabled() const { return state_->db != nullptr && !state_->disabled.load(); }

  Task<std::optional<std::string>> Get(std::string key) override;
  // One trip to the blocking pool and one statement for all of `keys`.
  Task<std::vector<std::optional<std::string>>> GetMany(std::vector<std::string> keys) override;
  void Put(std::string key, std::string value) override;
  // One blocking-pool job and one transaction for all of `rows`.
  void PutMany(std::vector<std::pair<std::string, std::string>> rows) override;
  void Erase(std::string key) override;

  Task<uint64_t> LatestManifestHint();
  void SetLatestManifest(uint64_t number);

  // Entries for this volume (tests).
  uint64_t CountForTest();

 private:
  // Shared with work queued on the blocking pool, which may outlive this object.
  struct State {
    ~State();
    void Disable(const std::string& what, int rc);
    sqlite3* db = nullptr;
    std::string store_url;
    std::mutex mu;       // serializes use of db
    std::string volume;  // GUARDED_BY(mu)
    std::atomic<bool> disabled{false};
  };
  SqliteCache(Env& env, sqlite3* db, std::string store_url);

  Env& env_;
  std::shared_ptr<State> state_;
};

}  // namespace portal::volume
