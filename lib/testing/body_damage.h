// BodyDamage: a FaultStore hook for tests of verified reads. Once armed, it flips the last
// byte of GET bodies of keys under `prefix` (the last byte lies in every segment's and map
// SST's checked trailer, and in every chunk and SST block): of each key's first GET only,
// or of every GET (`always`). It counts GETs per key either way.
//
// Not thread-safe beyond FaultStore's own locking (the hook runs under its mutex).
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "objstore/fault_store.h"

namespace portal::testing {

struct BodyDamage {
  std::string prefix;
  bool armed = false;
  bool always = false;
  std::map<std::string, int> gets;  // GETs under `prefix` since armed, by key

  uint64_t total_gets() const {
    uint64_t n = 0;
    for (const auto& [key, count] : gets) n += count;
    return n;
  }

  // The options for a FaultStore; `this` must outlive the store.
  objstore::FaultOptions Options() {
    objstore::FaultOptions o;
    o.decide = [this](objstore::OpKind kind, std::string_view key) {
      objstore::FaultDecision d;
      if (!armed || kind != objstore::OpKind::kGet || !key.starts_with(prefix)) return d;
      if (++gets[std::string(key)] == 1 || always) {
        d.action = objstore::FaultDecision::Action::kCorruptBody;
      }
      return d;
    };
    return o;
  }
};

}  // namespace portal::testing
