// ManifestLog's bounded waits and its conditional create.
#include "volume/manifest_log.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"

namespace portal::volume {
namespace {

Manifest Sample(uint64_t epoch) {
  Manifest m;
  m.volume_uuid = "00000000-0000-0000-0000-000000000001";
  m.size_bytes = 1 << 20;
  m.block_size = 4096;
  m.epoch = epoch;
  m.epoch_manifest = 1;
  return m;
}

struct Fixture {
  SimEnv env;
  objstore::MemoryStore memory;
  int heads_of_2 = 0;
  int failing_heads = 0;  // HEADs of manifest 2 that fail transiently before it answers
  objstore::FaultStore store{std::make_unique<testing::BorrowedStore>(memory), env, [this] {
                               objstore::FaultOptions o;
                               o.decide = [this](objstore::OpKind kind, std::string_view key) {
                                 objstore::FaultDecision d;
                                 if (kind == objstore::OpKind::kHead && key == ManifestKey(2) &&
                                     ++heads_of_2 <= failing_heads) {
                                   d.action = objstore::FaultDecision::Action::kFail;
                                 }
                                 return d;
                               };
                               return o;
                             }()};
  ManifestLog log{store, env};
};

TEST_CASE("ReadLatest waits for a manifest that does not answer yet, boundedly",
          "[volume][retry]") {
  Fixture f;
  REQUIRE(RunSim(f.env, f.log.Create(1, Sample(1))).ok());

  f.failing_heads = 3;  // answers (NotFound) after three failures
  auto latest = RunSim(f.env, f.log.ReadLatest(0));
  REQUIRE(latest.ok());
  CHECK(latest->first == 1);
  CHECK(f.heads_of_2 == 4);

  f.heads_of_2 = 0;
  f.failing_heads = 1'000'000;  // never answers: was a wait without end
  latest = RunSim(f.env, f.log.ReadLatest(0));
  CHECK(latest.status().IsUnavailable());
  CHECK(latest.status().message().find("manifest " + ManifestKey(2) +
                                       " did not answer after 100 attempts") == 0);
  CHECK(f.heads_of_2 == 100);
}

TEST_CASE("Create: our own earlier manifest is ours, another writer's fences us",
          "[volume][retry]") {
  Fixture f;
  REQUIRE(RunSim(f.env, f.log.Create(1, Sample(1))).ok());
  CHECK(RunSim(f.env, f.log.Create(1, Sample(1))).ok());  // a lost acknowledgement
  Status other = RunSim(f.env, f.log.Create(1, Sample(2)));
  CHECK(other.IsPreconditionFailed());
  CHECK(other.message() == "manifest " + ManifestKey(1) +
                               " was created by another writer: this writer is fenced");
}

}  // namespace
}  // namespace portal::volume
