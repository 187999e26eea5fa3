// ManifestLog's bounded waits and its conditional create.
#include "volume/manifest_log.h"

#include <catch2/catch.hpp>
#include <functional>

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

// Runs `before` once, in front of the first GET of `key`: another writer's commit and
// manifest GC landing between a reader's listing (or probe) and its read.
class BeforeFirstGet : public testing::BorrowedStore {
 public:
  BeforeFirstGet(objstore::ObjectStore& inner, std::string key, std::function<Task<void>()> before)
      : BorrowedStore(inner), key_(std::move(key)), before_(std::move(before)) {}
  Task<Result<std::string>> Get(std::string key,
                                std::optional<objstore::GetRange> range = {}) override {
    if (key == key_ && before_) {
      auto before = std::move(before_);
      before_ = nullptr;
      co_await before();
    }
    co_return co_await BorrowedStore::Get(std::move(key), range);
  }

 private:
  std::string key_;
  std::function<Task<void>()> before_;
};

TEST_CASE("ReadLatest lists again when the manifest it found is collected before its read",
          "[volume][retry]") {
  SimEnv env;
  objstore::MemoryStore memory;
  ManifestLog writer(memory, env);
  REQUIRE(RunSim(env, writer.Create(1, Sample(1))).ok());
  REQUIRE(RunSim(env, writer.Create(2, Sample(1))).ok());
  // The reader lists (1, 2) and probes 3 (absent); before it reads 2, the running writer
  // commits 3 and collects 2 (dst seeds 743650240823, 262903834534: manifests_kept 1).
  BeforeFirstGet view(memory, ManifestKey(2), [&]() -> Task<void> {
    CHECK((co_await writer.Create(3, Sample(1))).ok());  // (no REQUIRE in a coroutine)
    CHECK((co_await memory.Delete(ManifestKey(2))).ok());
  });
  ManifestLog reader(view, env);
  auto latest = RunSim(env, reader.ReadLatest(0));
  INFO(latest.status().ToString());
  REQUIRE(latest.ok());  // was NotFound: manifest/...2.json, read as "no volume here"
  CHECK(latest->first == 3);
}

TEST_CASE("Create: another writer's manifest, collected before our read-back, fences us",
          "[volume][retry]") {
  SimEnv env;
  objstore::MemoryStore memory;
  ManifestLog other(memory, env);
  REQUIRE(RunSim(env, other.Create(1, Sample(1))).ok());
  // We try 2 (412: the other writer has it); before our read-back the other writer
  // commits 3 and collects 2.
  BeforeFirstGet view(memory, ManifestKey(2), [&]() -> Task<void> {
    CHECK((co_await other.Create(3, Sample(1))).ok());
    CHECK((co_await memory.Delete(ManifestKey(2))).ok());
  });
  ManifestLog log(view, env);
  REQUIRE(RunSim(env, other.Create(2, Sample(1))).ok());
  Status st = RunSim(env, log.Create(2, Sample(2)));
  CHECK(st.IsPreconditionFailed());  // was NotFound: the open failed instead of re-reading
  CHECK(st.message().find("manifest " + ManifestKey(2) + " was created by another writer") == 0);
}

}  // namespace
}  // namespace portal::volume
