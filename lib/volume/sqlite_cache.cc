#include "volume/sqlite_cache.h"

#include <sqlite3.h>

#include <filesystem>

#include "env/async.h"
#include "util/log.h"

namespace portal::volume {
namespace {

auto Log() { return log::Get("portalbd::cache"); }

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=OFF;"  // a lost update costs a GET later, nothing more
    "CREATE TABLE IF NOT EXISTS objects(volume TEXT NOT NULL, key TEXT NOT NULL, "
    "  bytes BLOB NOT NULL, PRIMARY KEY(volume, key));"
    "CREATE TABLE IF NOT EXISTS hints(url TEXT PRIMARY KEY, manifest INTEGER NOT NULL);";

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  int rc() const { return rc_; }
  sqlite3_stmt* get() { return s_; }
  void Text(int i, const std::string& v) { sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
  void Blob(int i, const std::string& v) { sqlite3_bind_blob(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  int Step() { return sqlite3_step(s_); }
  void Reset() { sqlite3_reset(s_); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

}  // namespace

std::unique_ptr<SqliteCache> SqliteCache::Open(Env& env, const std::string& cache_dir,
                                               const std::string& store_url) {
  std::string path = ":memory:";
  if (!cache_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cache_dir, ec);
    path = cache_dir + "/portalbd-cache.sqlite";
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, 2000);  // other portalbd on the file
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    Log()->warn("metadata cache disabled path={} error=\"{}\"", path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    db = nullptr;
  }
  return std::unique_ptr<SqliteCache>(new SqliteCache(env, db, store_url));
}

SqliteCache::SqliteCache(Env& env, sqlite3* db, std::string store_url)
    : env_(env), state_(std::make_shared<State>()) {
  state_->db = db;
  state_->store_url = std::move(store_url);
}

SqliteCache::~SqliteCache() = default;

SqliteCache::State::~State() {
  if (db) sqlite3_close(db);
}

void SqliteCache::State::Disable(const std::string& what, int rc) {
  if (!disabled.exchange(true)) {
    Log()->warn("metadata cache disabled after an error during {} error=\"{}\"", what,
                sqlite3_errstr(rc));
  }
}

void SqliteCache::SetVolume(const std::string& volume_uuid) {
  std::lock_guard lock(state_->mu);
  state_->volume = volume_uuid;
}

Task<std::optional<std::string>> SqliteCache::Get(std::string key) {
  if (!enabled()) co_return std::nullopt;
  // A raw pointer: this object outlives the await. (GCC 12 destroyed a captured
  // shared_ptr twice when the awaiter was a temporary in `co_return co_await`.)
  State* st = state_.get();
  std::optional<std::string> out = co_await RunBlocking(env_, [st, &key]() -> std::optional<std::string> {
    std::lock_guard lock(st->mu);
    if (st->volume.empty()) return std::nullopt;
    Stmt s(st->db, "SELECT bytes FROM objects WHERE volume = ?1 AND key = ?2");
    if (s.rc() != SQLITE_OK) {
      st->Disable("a lookup", s.rc());
      return std::nullopt;
    }
    s.Text(1, st->volume);
    s.Text(2, key);
    if (s.Step() != SQLITE_ROW) return std::nullopt;
    const void* p = sqlite3_column_blob(s.get(), 0);
    int n = sqlite3_column_bytes(s.get(), 0);
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  });
  co_return out;
}

Task<std::vector<std::optional<std::string>>> SqliteCache::GetMany(std::vector<std::string> keys) {
  using Rows = std::vector<std::optional<std::string>>;
  if (!enabled() || keys.empty()) co_return Rows(keys.size());
  State* st = state_.get();  // see Get
  Rows out = co_await RunBlocking(env_, [st, &keys]() -> Rows {
    Rows rows(keys.size());
    std::lock_guard lock(st->mu);
    if (st->volume.empty()) return rows;
    Stmt s(st->db, "SELECT bytes FROM objects WHERE volume = ?1 AND key = ?2");
    if (s.rc() != SQLITE_OK) {
      st->Disable("a lookup", s.rc());
      return rows;
    }
    s.Text(1, st->volume);
    for (size_t i = 0; i < keys.size(); ++i) {
      s.Text(2, keys[i]);
      if (s.Step() == SQLITE_ROW) {
        const void* p = sqlite3_column_blob(s.get(), 0);
        int n = sqlite3_column_bytes(s.get(), 0);
        rows[i].emplace(static_cast<const char*>(p), static_cast<size_t>(n));
      }
      s.Reset();  // keeps the bound volume
    }
    return rows;
  });
  co_return out;
}

void SqliteCache::Put(std::string key, std::string value) {
  if (!enabled()) return;
  env_.PostBlocking([st = state_, key = std::move(key), value = std::move(value)] {
    std::lock_guard lock(st->mu);
    if (st->volume.empty() || st->disabled) return;
    Stmt s(st->db, "INSERT OR REPLACE INTO objects(volume, key, bytes) VALUES(?1, ?2, ?3)");
    if (s.rc() != SQLITE_OK) return st->Disable("an insert", s.rc());
    s.Text(1, st->volume);
    s.Text(2, key);
    s.Blob(3, value);
    if (int rc = s.Step(); rc != SQLITE_DONE) st->Disable("an insert", rc);
  });
}

void SqliteCache::PutMany(std::vector<std::pair<std::string, std::string>> rows) {
  if (!enabled() || rows.empty()) return;
  env_.PostBlocking([st = state_, rows = std::move(rows)] {
    std::lock_guard lock(st->mu);
    if (st->volume.empty() || st->disabled) return;
    if (int rc = sqlite3_exec(st->db, "BEGIN", nullptr, nullptr, nullptr); rc != SQLITE_OK) {
      return st->Disable("an insert", rc);
    }
    int rc = SQLITE_DONE;
    {
      Stmt s(st->db, "INSERT OR REPLACE INTO objects(volume, key, bytes) VALUES(?1, ?2, ?3)");
      rc = s.rc() == SQLITE_OK ? SQLITE_DONE : s.rc();
      s.Text(1, st->volume);
      for (size_t i = 0; i < rows.size() && rc == SQLITE_DONE; ++i) {
        s.Text(2, rows[i].first);
        s.Blob(3, rows[i].second);
        rc = s.Step();
        s.Reset();
      }
    }
    if (rc == SQLITE_DONE) rc = sqlite3_exec(st->db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_DONE && rc != SQLITE_OK) {
      sqlite3_exec(st->db, "ROLLBACK", nullptr, nullptr, nullptr);
      st->Disable("an insert", rc);
    }
  });
}

void SqliteCache::Erase(std::string key) {
  if (!enabled()) return;
  env_.PostBlocking([st = state_, key = std::move(key)] {
    std::lock_guard lock(st->mu);
    if (st->volume.empty() || st->disabled) return;
    // The key and its parts "<key>@...": every key from "<key>@" up to "<key>A" ('@' +
    // 1), a range of the primary key's index.
    Stmt s(st->db,
           "DELETE FROM objects WHERE volume = ?1 AND (key = ?2 OR (key >= ?3 AND key < ?4))");
    if (s.rc() != SQLITE_OK) return st->Disable("a delete", s.rc());
    s.Text(1, st->volume);
    s.Text(2, key);
    s.Text(3, key + "@");
    s.Text(4, key + "A");
    if (int rc = s.Step(); rc != SQLITE_DONE) st->Disable("a delete", rc);
  });
}

Task<uint64_t> SqliteCache::LatestManifestHint() {
  if (!enabled()) co_return 0;
  State* st = state_.get();  // see Get
  uint64_t out = co_await RunBlocking(env_, [st]() -> uint64_t {
    std::lock_guard lock(st->mu);
    Stmt s(st->db, "SELECT manifest FROM hints WHERE url = ?1");
    if (s.rc() != SQLITE_OK) return 0;
    s.Text(1, st->store_url);
    return s.Step() == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0)) : 0;
  });
  co_return out;
}

void SqliteCache::SetLatestManifest(uint64_t number) {
  if (!enabled()) return;
  env_.PostBlocking([st = state_, number] {
    std::lock_guard lock(st->mu);
    if (st->disabled) return;
    Stmt s(st->db, "INSERT OR REPLACE INTO hints(url, manifest) VALUES(?1, ?2)");
    if (s.rc() != SQLITE_OK) return st->Disable("a hint update", s.rc());
    s.Text(1, st->store_url);
    s.Int(2, static_cast<int64_t>(number));
    if (int rc = s.Step(); rc != SQLITE_DONE) st->Disable("a hint update", rc);
  });
}

uint64_t SqliteCache::CountForTest() {
  std::lock_guard lock(state_->mu);
  if (!state_->db) return 0;
  Stmt s(state_->db, "SELECT COUNT(*) FROM objects WHERE volume = ?1");
  s.Text(1, state_->volume);
  return s.Step() == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0)) : 0;
}

}  // namespace portal::volume
