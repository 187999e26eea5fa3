// The disk cache. One entry file per key, named by Checksum64 of the key in hex:
//
//   +----------+-----------+---------------+------------------+-----+---------+
//   | "PBDCHNK1" | key_len u32 | payload_len u64 | payload_sum u64 | key | payload |
//   +----------+-----------+---------------+------------------+-----+---------+
//   (integers little-endian; payload_sum = Checksum64(payload), XXH3-64)
//
// A Get accepts an entry only if the file is exactly that long, holds the key asked for
// (a name collision or a stale file is a miss), and its payload hashes to the checksum
// the caller expects. The local format is private to one machine and not versioned
// beyond the magic: a file that does not parse is dropped like a damaged one.
#include "cache/disk_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <list>
#include <mutex>
#include <unordered_map>

#include "env/async.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/log.h"

namespace portal::cache {
namespace {

auto Log() { return log::Get("portalbd::cache"); }

constexpr std::string_view kMagic = "PBDCHNK1";
constexpr size_t kHeaderSize = 8 + 4 + 8 + 8;

// An entry's id (what the index is keyed by) and its file's name, the id in hex.
uint64_t IdOf(const std::string& key) { return Checksum64(key); }
std::string FileName(uint64_t id) { return fmt::format("{:016x}", id); }
// The id a file name spells, if it is one FileName makes (16 lowercase hex digits).
std::optional<uint64_t> ParseName(std::string_view name) {
  uint64_t id = 0;
  const char* end = name.data() + name.size();
  auto [at, ec] = std::from_chars(name.data(), end, id, 16);
  if (ec != std::errc{} || at != end || FileName(id) != name) return std::nullopt;
  return id;
}

uint64_t FileSize(const std::string& key, uint64_t payload) {
  return kHeaderSize + key.size() + payload;
}

std::string Encode(const std::string& key, uint64_t checksum, std::string_view payload) {
  std::string out;
  out.reserve(FileSize(key, payload.size()));
  out.append(kMagic);
  PutFixed32(&out, static_cast<uint32_t>(key.size()));
  PutFixed64(&out, payload.size());
  PutFixed64(&out, checksum);
  out.append(key);
  out.append(payload);
  return out;
}

// Whether `head` (an entry's first kHeaderSize + key.size() bytes) is the header of an
// entry for `key` whose payload is `size` bytes hashing to `checksum`.
bool HeaderMatches(std::string_view head, const std::string& key, uint64_t checksum,
                   uint64_t size) {
  if (head.size() != kHeaderSize + key.size() || head.substr(0, 8) != kMagic) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(head.data());
  const uint32_t key_len = LoadLE32(p + 8);
  const uint64_t payload_len = LoadLE64(p + 12);
  const uint64_t sum = LoadLE64(p + 20);
  if (key_len != key.size() || payload_len != size || sum != checksum) return false;
  return head.substr(kHeaderSize) == key;
}

// The footer's checksum, checked on every hit, whichever way the entry was read: what
// makes the cache safe to trust.
bool PayloadMatches(std::string_view payload, uint64_t checksum) {
  return Checksum64(payload) == checksum;
}

// The payload of `file` if it is a whole, undamaged entry for `key` with `checksum`.
std::optional<std::string_view> Verify(std::string_view file, const std::string& key,
                                       uint64_t checksum, uint64_t size) {
  const size_t head = kHeaderSize + key.size();
  if (file.size() != FileSize(key, size)) return std::nullopt;
  if (!HeaderMatches(file.substr(0, head), key, checksum, size)) return std::nullopt;
  std::string_view payload = file.substr(head);
  if (!PayloadMatches(payload, checksum)) return std::nullopt;
  return payload;
}

}  // namespace

struct DiskCache::State {
  enum Phase { kLoading, kOn, kOff };
  struct Entry {
    uint64_t id = 0;       // IdOf the key; its file is FileName(id)
    uint64_t size = 0;     // of the file
    bool written = false;  // false while its write is queued
  };

  std::unique_ptr<CacheFiles> files;
  uint64_t capacity = 0;
  std::atomic<int> phase{kLoading};
  std::atomic<int64_t> jobs{0};  // blocking work queued or running

  mutable std::mutex mu;
  std::list<Entry> lru;  // GUARDED_BY(mu); front: most recent
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index;  // GUARDED_BY(mu)
  uint64_t usage = 0;    // GUARDED_BY(mu): file bytes, queued writes included
  uint64_t pending = 0;  // GUARDED_BY(mu): payload bytes queued for writing

  std::atomic<uint64_t> hits{0}, misses{0}, damaged{0}, inserts{0}, dropped{0}, evictions{0};

  bool on() const { return phase.load(std::memory_order_acquire) == kOn; }

  // Off for good, said once.
  void TurnOff(const std::string& why) {
    if (phase.exchange(kOff) != kOff) {
      Log()->warn("disk cache off, reads go to the store path={} error=\"{}\"", files->Describe(),
                  why);
    }
  }

  // Drops `name` from the index (its file is removed by the caller).
  void ForgetLocked(uint64_t id) {
    auto it = index.find(id);
    if (it == index.end()) return;
    usage -= it->second->size;
    lru.erase(it->second);
    index.erase(it);
  }

  // Written entries to remove, least recent first, until usage fits the capacity.
  std::vector<std::string> EvictLocked() {
    std::vector<std::string> victims;
    auto it = lru.end();
    while (usage > capacity && it != lru.begin()) {
      --it;
      if (!it->written) continue;  // its write is queued; it is the newest anyway
      victims.push_back(FileName(it->id));
      usage -= it->size;
      index.erase(it->id);
      it = lru.erase(it);
    }
    evictions.fetch_add(victims.size(), std::memory_order_relaxed);
    return victims;
  }

  void RemoveAll(const std::vector<std::string>& names) {
    for (const auto& n : names) (void)files->Remove(n);  // a leftover is found by Load
  }
};

DiskCache::DiskCache(Env& env, std::unique_ptr<CacheFiles> files, uint64_t capacity_bytes)
    : env_(env), state_(std::make_shared<State>()) {
  state_->files = std::move(files);
  state_->capacity = capacity_bytes;
}

DiskCache::~DiskCache() = default;

bool DiskCache::enabled() const { return state_->on(); }

Task<void> DiskCache::Load() {
  // A raw pointer across the await, as in volume/sqlite_cache.cc: this object outlives it.
  State* st = state_.get();
  if (st->phase.load() != State::kLoading) co_return;
  st->jobs.fetch_add(1);
  Status opened = co_await RunBlocking(env_, [st] { return st->files->Open(); });
  Result<std::vector<CacheFiles::FileInfo>> listed = Status::Shutdown("not listed");
  if (opened.ok()) {
    listed = co_await RunBlocking(env_, [st] { return st->files->List(); });
  } else {
    listed = opened;
  }
  st->jobs.fetch_sub(1);
  if (!listed.ok()) {
    st->TurnOff(listed.status().ToString());
    co_return;
  }
  std::vector<CacheFiles::FileInfo>& files = *listed;
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.mtime_ns < b.mtime_ns; });
  std::vector<std::string> victims;
  // Files no entry is named as: no Get would find them. They are not the cache's to
  // delete (a [cache] dir pointed at a directory holding something else): left alone,
  // not counted, and named in one warning.
  std::vector<std::string> strays;
  uint64_t usage = 0;
  size_t entries = 0;
  {
    std::lock_guard lock(st->mu);
    for (auto& f : files) {  // oldest first: the newest ends at the front
      std::optional<uint64_t> id = ParseName(f.name);
      if (!id) {
        strays.push_back(std::move(f.name));
        continue;
      }
      st->lru.push_front(State::Entry{*id, f.size, true});
      st->index[*id] = st->lru.begin();
      st->usage += f.size;
    }
    victims = st->EvictLocked();
    usage = st->usage;
    entries = st->index.size();
    int expected = State::kLoading;
    st->phase.compare_exchange_strong(expected, State::kOn);
  }
  Log()->info("disk cache ready path={} entries={} bytes={} capacity_bytes={}",
              st->files->Describe(), entries, usage, st->capacity);
  if (!strays.empty())
    Log()->warn("disk cache path={} ignores {} files not named as a cache entry (first: {}); "
                "they are neither read nor removed",
                st->files->Describe(), strays.size(), strays.front());
  if (!victims.empty()) {
    st->jobs.fetch_add(1);
    env_.PostBlocking([s = state_, victims = std::move(victims)] {
      s->RemoveAll(victims);
      s->jobs.fetch_sub(1);
    });
  }
}

Task<std::optional<std::string>> DiskCache::Get(std::string key, uint64_t checksum, uint64_t size) {
  std::vector<GetItem> items;
  items.push_back(GetItem{std::move(key), checksum, size});
  std::vector<std::optional<std::string>> got = co_await GetMany(std::move(items));
  co_return std::move(got[0]);
}

Task<std::vector<std::optional<std::string>>> DiskCache::GetMany(std::vector<GetItem> items) {
  std::vector<std::optional<std::string>> out(items.size());
  std::vector<ReadRef> refs;
  for (const GetItem& it : items) refs.push_back({&it.key, it.checksum, it.size});
  std::string file;  // every entry is read into this one buffer, then copied out
  co_await ReadEach(refs, [&](size_t i, const std::string& name, bool) -> Result<bool> {
    RETURN_IF_ERROR(state_->files->ReadInto(name, &file));
    auto payload = Verify(file, items[i].key, items[i].checksum, items[i].size);
    if (payload) out[i].emplace(*payload);
    return payload.has_value();
  });
  co_return out;
}

Task<std::vector<bool>> DiskCache::ReadMany(std::vector<ReadItem> items) {
  std::vector<bool> out(items.size(), false);
  std::vector<ReadRef> refs;
  for (const ReadItem& it : items) refs.push_back({&it.key, it.checksum, it.size});
  std::vector<uint8_t> head;
  auto read = [&](size_t i, const std::string& name, bool cached_only) -> Result<bool> {
    const ReadItem& it = items[i];
    head.resize(kHeaderSize + it.key.size());
    const std::span<uint8_t> body(it.dest, it.size);
    CacheFiles& files = *state_->files;
    ASSIGN_OR_RETURN(uint64_t len, cached_only ? files.ReadSplitCached(name, head, body)
                                               : files.ReadSplit(name, head, body));
    const std::string_view payload(reinterpret_cast<const char*>(it.dest), it.size);
    out[i] = len == FileSize(it.key, it.size) &&
             HeaderMatches(std::string_view(reinterpret_cast<const char*>(head.data()), head.size()),
                           it.key, it.checksum, it.size) &&
             PayloadMatches(payload, it.checksum);
    return bool(out[i]);
  };
  co_await ReadEach(refs, read, /*cached_first=*/true);
  co_return out;
}

bool DiskCache::Contains(const std::string& key) const {
  const State& st = *state_;
  if (!st.on()) return false;
  const uint64_t id = IdOf(key);
  std::lock_guard lock(st.mu);
  auto it = st.index.find(id);
  return it != st.index.end() && it->second->written;
}

Task<void> DiskCache::ReadEach(const std::vector<ReadRef>& items,
                               std::function<Result<bool>(size_t, const std::string&, bool)> read,
                               bool cached_first) {
  State* st = state_.get();  // see Load
  if (!st->on() || items.empty()) co_return;
  std::vector<std::string> names(items.size());  // "": not in the index, a miss
  size_t present = 0;
  {
    std::lock_guard lock(st->mu);
    for (size_t i = 0; i < items.size(); ++i) {
      auto it = st->index.find(IdOf(*items[i].key));
      if (it == st->index.end() || !it->second->written) {
        st->misses.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      st->lru.splice(st->lru.begin(), st->lru, it->second);
      names[i] = FileName(it->first);
      ++present;
    }
  }
  if (present == 0) co_return;
  // Read and verified one file after another: with `cached_first`, on this thread as long
  // as the page cache holds them, then (from the first that would wait for the disk) on
  // the blocking pool. A present entry that is not a hit leaves the index; `drop[i]`: its
  // file is removed too (it failed verification, or reading it failed other than with
  // NotFound).
  struct Outcome {
    std::vector<bool> hit, drop;
    std::vector<std::string> why;
  };
  Outcome r;
  r.hit.resize(items.size(), false);
  r.drop.resize(items.size(), false);
  r.why.resize(items.size());
  auto settle = [st, &r](size_t i, const Result<bool>& got) {
    if (got.ok() && *got) {
      r.hit[i] = true;
      return;
    }
    // Gone (the directory was cleaned under us) or damaged: dropped from the index
    // either way; a NotFound is not damage and has no file to remove.
    if (got.ok()) st->damaged.fetch_add(1, std::memory_order_relaxed);
    r.drop[i] = got.ok() || !got.status().IsNotFound();
    r.why[i] = got.ok() ? "failed verification" : got.status().ToString();
  };
  size_t next = 0;  // the first item not read yet
  for (; cached_first && next < items.size(); ++next) {
    if (names[next].empty()) continue;
    Result<bool> got = read(next, names[next], true);
    if (!got.ok() && got.status().code() == Status::Code::kBusy) break;  // needs the disk
    settle(next, got);
  }
  if (next < items.size()) {
    st->jobs.fetch_add(1);
    co_await RunBlocking(env_, [&names, &read, &settle, next] {
      for (size_t i = next; i < names.size(); ++i) {
        if (!names[i].empty()) settle(i, read(i, names[i], false));
      }
      return true;
    });
    st->jobs.fetch_sub(1);
  }
  std::vector<std::string> remove;
  for (size_t i = 0; i < items.size(); ++i) {
    if (names[i].empty()) continue;
    if (r.hit[i]) {
      st->hits.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    st->misses.fetch_add(1, std::memory_order_relaxed);
    const std::string& name = names[i];
    {
      std::lock_guard lock(st->mu);
      st->ForgetLocked(IdOf(*items[i].key));
    }
    if (r.drop[i]) {
      Log()->debug("disk cache entry dropped name={} error=\"{}\"", name, r.why[i]);
      remove.push_back(name);
    }
  }
  if (!remove.empty()) {
    st->jobs.fetch_add(1);
    env_.PostBlocking([s = state_, remove = std::move(remove)] {
      s->RemoveAll(remove);
      s->jobs.fetch_sub(1);
    });
  }
}

void DiskCache::Put(std::string key, uint64_t checksum, std::string bytes) {
  const uint64_t size = bytes.size();
  std::vector<PutItem> items;
  items.push_back(PutItem{std::move(key), checksum, size});
  auto shared = std::make_shared<std::string>(std::move(bytes));
  Put(std::move(items), [shared](size_t) { return std::move(*shared); });
}

void DiskCache::Put(std::vector<PutItem> items, std::function<std::string(size_t)> payload) {
  State* st = state_.get();
  if (!st->on()) return;
  // Reserve now (a second Put of the same key is dropped; usage counts queued writes).
  std::vector<size_t> chosen;
  std::vector<uint64_t> ids;  // IdOf each chosen item's key
  {
    std::lock_guard lock(st->mu);
    for (size_t i = 0; i < items.size(); ++i) {
      const uint64_t id = IdOf(items[i].key);
      const uint64_t fsize = FileSize(items[i].key, items[i].size);
      if (st->index.count(id) || fsize > st->capacity ||
          st->pending + items[i].size > kMaxPendingBytes) {
        st->dropped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      st->lru.push_front(State::Entry{id, fsize, false});
      st->index[id] = st->lru.begin();
      st->usage += fsize;
      st->pending += items[i].size;
      chosen.push_back(i);
      ids.push_back(id);
    }
  }
  if (chosen.empty()) return;
  st->jobs.fetch_add(1);
  env_.PostBlocking([s = state_, items = std::move(items), chosen = std::move(chosen),
                     ids = std::move(ids), payload = std::move(payload)] {
    for (size_t j = 0; j < chosen.size(); ++j) {
      const PutItem& item = items[chosen[j]];
      Status written = Status::Shutdown("the disk cache is off");
      if (s->on()) {
        std::string bytes = payload(chosen[j]);
        if (bytes.size() == item.size && Checksum64(bytes) == item.checksum) {
          written = s->files->Write(FileName(ids[j]), Encode(item.key, item.checksum, bytes));
          if (!written.ok()) s->TurnOff(written.ToString());
        } else {
          written = Status::Corruption("payload does not match its checksum");
        }
      }
      std::vector<std::string> victims;
      {
        std::lock_guard lock(s->mu);
        s->pending -= item.size;
        auto it = s->index.find(ids[j]);
        if (it != s->index.end() && !it->second->written) {
          if (written.ok()) {
            it->second->written = true;
          } else {
            s->ForgetLocked(ids[j]);
          }
        }
        if (written.ok()) victims = s->EvictLocked();
      }
      if (written.ok()) s->inserts.fetch_add(1, std::memory_order_relaxed);
      s->RemoveAll(victims);
    }
    s->jobs.fetch_sub(1);
  });
}

DiskCacheStats DiskCache::stats() const {
  const State& st = *state_;
  DiskCacheStats s;
  s.enabled = st.on();
  s.hits = st.hits.load();
  s.misses = st.misses.load();
  s.damaged = st.damaged.load();
  s.inserts = st.inserts.load();
  s.dropped = st.dropped.load();
  s.evictions = st.evictions.load();
  s.capacity_bytes = st.capacity;
  std::lock_guard lock(st.mu);
  s.usage_bytes = st.usage;
  s.entries = st.index.size();
  return s;
}

Task<void> DiskCache::Drain() {
  while (state_->jobs.load() > 0) co_await SleepFor(env_, kNanosPerMilli);
}

}  // namespace portal::cache
