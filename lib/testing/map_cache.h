// A metadata cache (cache::PersistentCache) in memory, for tests: its rows can be looked
// at and damaged.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "cache/persistent_cache.h"

namespace portal::testing {

struct MapCache final : cache::PersistentCache {
  std::map<std::string, std::string> rows;
  Task<std::optional<std::string>> Get(std::string key) override {
    auto it = rows.find(key);
    if (it == rows.end()) co_return std::nullopt;
    co_return it->second;
  }
  void Put(std::string key, std::string value) override { rows[key] = std::move(value); }
  // The key and its parts "<key>@...", as SqliteCache::Erase.
  void Erase(std::string key) override {
    rows.erase(key);
    rows.erase(rows.lower_bound(key + "@"), rows.lower_bound(key + "A"));
  }
};

}  // namespace portal::testing
