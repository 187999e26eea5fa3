// For clone tests: volumes by name, each in its own MemoryStore (as the daemon's prefix
// views give them), and the resolver over them.
#pragma once

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <string>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {

class CloneWorld {
 public:
  explicit CloneWorld(uint64_t size_bytes) {
    options_ = portal::testing::SmallVolumeOptions(size_bytes);
    options_.gc_grace_ms = 1000;
    options_.resolve_volume = resolver();
  }

  VolumeOptions& options() { return options_; }
  objstore::MemoryStore& Store(const std::string& name) {
    auto& s = stores_[name];
    if (!s) s = std::make_unique<objstore::MemoryStore>();
    return *s;
  }
  // Stores outlive the resolver's users: they are never removed.
  VolumeResolver resolver() {
    return [this](const std::string& name) -> Result<objstore::ObjectStore*> {
      auto it = stores_.find(name);
      if (it == stores_.end()) return Status::NotFound("no volume named '" + name + "'");
      return static_cast<objstore::ObjectStore*>(it->second.get());
    };
  }
  // Options for opening `name`: a clone keeps its snapshot's size.
  VolumeOptions OptionsFor(SimEnv& env, const std::string& name) {
    VolumeOptions o = options_;
    auto rec = RunSim(env, ReadCloneRecord(env, Store(name)));
    if (rec.ok() && rec->has_value()) o.size_bytes = 0;
    return o;
  }
  std::shared_ptr<LsmVolume> Open(SimEnv& env, const std::string& name) {
    auto v = RunSim(env, LsmVolume::Open(env, Store(name), OptionsFor(env, name)));
    if (!v.ok()) FAIL("open of " << name << " failed: " << v.status().ToString());
    return *v;
  }
  void Close(SimEnv& env, std::shared_ptr<LsmVolume>& v) {
    REQUIRE(RunSim(env, v->Close()).ok());
    v.reset();
  }

 private:
  VolumeOptions options_;
  std::map<std::string, std::unique_ptr<objstore::MemoryStore>> stores_;
};

}  // namespace portal::volume
