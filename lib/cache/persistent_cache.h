// PersistentCache: a local, never-authoritative cache of the bytes of immutable store
// objects (an SST's index tail and data blocks, a segment's footer tail). Every cached value is verified
// by the same checksums as a fresh GET, so a stale or corrupt entry costs a GET, never
// correctness, and deleting the cache loses nothing.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "env/task.h"

namespace portal::cache {

class PersistentCache {
 public:
  virtual ~PersistentCache() = default;
  // The cached bytes for `key`, if any.
  virtual Task<std::optional<std::string>> Get(std::string key) = 0;
  // The cached bytes for each of `keys`, in order (one lookup for many keys where the
  // cache can do that; here, one Get after another).
  virtual Task<std::vector<std::optional<std::string>>> GetMany(std::vector<std::string> keys) {
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (std::string& key : keys) out.push_back(co_await Get(std::move(key)));
    co_return out;
  }
  // Stores `value` for `key` in the background (best effort).
  virtual void Put(std::string key, std::string value) = 0;
  // Stores each (key, value) as Put does (where the cache can, in one transaction).
  virtual void PutMany(std::vector<std::pair<std::string, std::string>> rows) {
    for (auto& [key, value] : rows) Put(std::move(key), std::move(value));
  }
  // Drops `key` and its parts: the keys "<key>@..." (an SST's data blocks).
  virtual void Erase(std::string key) = 0;
};

}  // namespace portal::cache
