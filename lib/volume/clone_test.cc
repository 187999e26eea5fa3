// Clones (clone.h, docs/volume.md "Clones"): each volume in its own store, as the
// daemon's prefix views give them; a map of stores by name is the resolver.
#include "volume/clone.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <memory>

#include "crypto/aead.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/clone_test_util.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

std::vector<uint8_t> Pattern(uint8_t tag, size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(tag * 31 + i % 253 + 1);
  return d;
}

std::vector<uint8_t> Read(SimEnv& env, BlockDevice& dev, uint64_t off, size_t n) {
  return testing::ReadDevice(env, dev, off, n);
}

constexpr uint64_t kSize = 1 << 20;

TEST_CASE("a clone reads as its snapshot, and writes on either side never reach the other",
          "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  auto parent = w.Open(env, "base");
  const auto a = Pattern(1, 256 * 1024), b = Pattern(2, 64 * 1024);
  REQUIRE(RunSim(env, parent->Write(0, a, {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("gold")).ok());
  const auto snap = Read(env, *parent, 0, kSize);

  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c1"), "c1")).ok());
  auto clone = w.Open(env, "c1");
  CHECK(clone->size_bytes() == kSize);
  CHECK(Read(env, *clone, 0, kSize) == snap);

  REQUIRE(RunSim(env, parent->Write(4096, b, {})).ok());  // parent after the snapshot
  CHECK(Read(env, *clone, 0, kSize) == snap);
  REQUIRE(RunSim(env, clone->Write(100000, b, {})).ok());  // clone (unaligned)
  auto want_clone = snap;
  std::copy(b.begin(), b.end(), want_clone.begin() + 100000);
  CHECK(Read(env, *clone, 0, kSize) == want_clone);
  auto want_parent = snap;
  std::copy(b.begin(), b.end(), want_parent.begin() + 4096);
  CHECK(Read(env, *parent, 0, kSize) == want_parent);

  // BLOCK_STATUS: the base's data is data, the base's holes are holes.
  auto st = RunSim(env, clone->BlockStatus(0, kSize, 64));
  REQUIRE(st.ok());
  REQUIRE(!st->empty());
  CHECK(!(*st)[0].hole);
  CHECK(st->back().hole);
  w.Close(env, clone);
  w.Close(env, parent);
}

TEST_CASE("a TRIM or WRITE_ZEROES in a clone hides its base, also compacted to the bottom",
          "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  auto parent = w.Open(env, "base");
  REQUIRE(RunSim(env, parent->Write(0, Pattern(3, kSize), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("gold")).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c")).ok());
  auto clone = w.Open(env, "c");
  REQUIRE(RunSim(env, clone->Trim(65536, 65536, {})).ok());
  REQUIRE(RunSim(env, clone->WriteZeroes(262144, 8192, {})).ok());
  auto want = Pattern(3, kSize);
  std::fill(want.begin() + 65536, want.begin() + 131072, 0);
  std::fill(want.begin() + 262144, want.begin() + 262144 + 8192, 0);
  CHECK(Read(env, *clone, 0, kSize) == want);
  auto st = RunSim(env, clone->BlockStatus(65536, 65536, 8));
  REQUIRE(st.ok());
  REQUIRE(st->size() == 1);
  CHECK((*st)[0].hole);
  // Every level compacted into the last: the holes must stay (there is a base below).
  REQUIRE(RunSim(env, clone->Flush()).ok());
  REQUIRE(RunSim(env, clone->FlushMemtable()).ok());
  REQUIRE(RunSim(env, clone->CompactAll()).ok());
  CHECK(Read(env, *clone, 0, kSize) == want);
  w.Close(env, clone);
  clone = w.Open(env, "c");  // reopen: finds its base again
  CHECK(Read(env, *clone, 0, kSize) == want);
  w.Close(env, clone);
  w.Close(env, parent);
}

TEST_CASE("a clone of a clone reads through both, and each keeps its own writes",
          "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  auto parent = w.Open(env, "base");
  REQUIRE(RunSim(env, parent->Write(0, Pattern(1, kSize), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("s")).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "s", w.Store("c1"), "c1")).ok());
  auto c1 = w.Open(env, "c1");
  REQUIRE(RunSim(env, c1->Write(0, Pattern(2, 128 * 1024), {})).ok());
  REQUIRE(RunSim(env, c1->Trim(512 * 1024, 4096, {})).ok());
  REQUIRE(RunSim(env, c1->CreateSnapshot("t")).ok());
  const auto at_t = Read(env, *c1, 0, kSize);
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "c1", "t", w.Store("c2"), "c2")).ok());
  auto c2 = w.Open(env, "c2");
  CHECK(Read(env, *c2, 0, kSize) == at_t);
  REQUIRE(RunSim(env, c2->Write(65536 * 3, Pattern(9, 65536), {})).ok());
  REQUIRE(RunSim(env, c1->Write(65536 * 3, Pattern(8, 65536), {})).ok());
  REQUIRE(RunSim(env, parent->Write(65536 * 3, Pattern(7, 65536), {})).ok());
  auto want2 = at_t;
  auto p9 = Pattern(9, 65536);
  std::copy(p9.begin(), p9.end(), want2.begin() + 65536 * 3);
  CHECK(Read(env, *c2, 0, kSize) == want2);
  w.Close(env, c2);
  c2 = w.Open(env, "c2");
  CHECK(Read(env, *c2, 0, kSize) == want2);
  // The snapshot device of a clone reads through its base as well.
  auto dev = c1->OpenSnapshot("t");
  REQUIRE(dev.ok());
  CHECK(Read(env, **dev, 0, kSize) == at_t);
  dev->reset();
  w.Close(env, c2);
  w.Close(env, c1);
  w.Close(env, parent);
}

TEST_CASE("the parent's GC, however aggressive, keeps what a clone reads", "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  w.options().gc_live_ratio = 0.99;  // relocate nearly everything
  auto parent = w.Open(env, "base");
  REQUIRE(RunSim(env, parent->Write(0, Pattern(4, kSize), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("gold")).ok());
  const auto snap = Read(env, *parent, 0, kSize);
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c")).ok());
  auto clone = w.Open(env, "c");
  for (int round = 0; round < 3; ++round) {  // overwrite and trim everything, collect
    REQUIRE(RunSim(env, parent->Write(0, Pattern(10 + round, kSize), {})).ok());
    REQUIRE(RunSim(env, parent->Trim(0, kSize / 2, {})).ok());
    REQUIRE(RunSim(env, parent->Flush()).ok());
    REQUIRE(RunSim(env, parent->FlushMemtable()).ok());
    REQUIRE(RunSim(env, parent->CompactAll()).ok());
    env.AdvanceBy(2 * w.options().gc_grace_ms * kNanosPerMilli);
    REQUIRE(RunSim(env, parent->RunGc()).ok());
    REQUIRE(RunSim(env, parent->RunGc()).ok());
  }
  w.Close(env, parent);
  parent = w.Open(env, "base");
  env.AdvanceBy(2 * w.options().gc_grace_ms * kNanosPerMilli);
  REQUIRE(RunSim(env, parent->RunGc()).ok());
  w.Close(env, clone);
  clone = w.Open(env, "c");  // cold caches: every block from the parent's store
  CHECK(Read(env, *clone, 0, kSize) == snap);
  w.Close(env, clone);
  w.Close(env, parent);
}

TEST_CASE("a snapshot with clones cannot be deleted, and the error names them", "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  auto parent = w.Open(env, "base");
  REQUIRE(RunSim(env, parent->Write(0, Pattern(5, 65536), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("gold")).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("x"), "x")).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("y"), "y")).ok());
  Status st = RunSim(env, parent->DeleteSnapshot("gold"));
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(st.ToString().find("x, y") != std::string::npos);
  CHECK(parent->ListSnapshots().size() == 1);
  // Not left marked: another clone can still be made.
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("z"), "z")).ok());
  for (const char* name : {"x", "y", "z"}) {
    REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store(name))).ok());
    CHECK(w.Store(name).total_bytes() == 0);
  }
  REQUIRE(RunSim(env, parent->DeleteSnapshot("gold")).ok());
  // And a clone of a deleted snapshot is refused, leaving nothing behind.
  Status gone = RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("q"), "q"));
  CHECK(gone.IsNotFound());
  CHECK(w.Store("q").total_bytes() == 0);
  w.Close(env, parent);
}

// Calls `hook(key, is_list)` in front of every PUT and List under clones/ (delete marks
// and references); a hook's error is returned instead of the call.
class HookClones : public portal::testing::BorrowedStore {
 public:
  using Hook = std::function<Task<Status>(const std::string& key, bool is_list)>;
  HookClones(objstore::ObjectStore& inner, Hook hook)
      : BorrowedStore(inner), hook_(std::move(hook)) {}
  Task<Status> Put(std::string key, std::string data) override {
    if (key.starts_with("clones/")) CO_RETURN_IF_ERROR(co_await hook_(key, false));
    co_return co_await BorrowedStore::Put(std::move(key), std::move(data));
  }
  Task<Result<std::vector<objstore::ObjectInfo>>> List(std::string prefix,
                                                       std::string start_after) override {
    if (prefix.starts_with("clones/")) CO_RETURN_IF_ERROR(co_await hook_(prefix, true));
    co_return co_await BorrowedStore::List(std::move(prefix), std::move(start_after));
  }

 private:
  Hook hook_;
};

TEST_CASE("a snapshot delete fenced by a newer writer leaves the snapshot clonable",
          "[volume][clone]") {
  // dst seed 768287148537: writer 1's delete of 'gold' wrote its mark after writer 2
  // opened (and cleared the marks it found); writer 1's commit then met writer 2's
  // opener and failed. The snapshot is still listed, but the mark stayed: every clone of
  // it was refused Busy "being deleted" until the next open.
  SimEnv env;
  CloneWorld w(kSize);
  auto v1 = w.Open(env, "base");
  REQUIRE(RunSim(env, v1->Write(0, Pattern(3, 65536), {})).ok());
  REQUIRE(RunSim(env, v1->CreateSnapshot("gold")).ok());
  w.Close(env, v1);
  std::shared_ptr<LsmVolume> v2;
  bool deleting = false;
  HookClones view(w.Store("base"), [&](const std::string&, bool is_list) -> Task<Status> {
    if (!deleting || is_list || v2) co_return Status::Ok();
    // In front of writer 1's mark: writer 2 opens.
    auto opened = co_await LsmVolume::Open(env, w.Store("base"), w.OptionsFor(env, "base"));
    CHECK(opened.ok());  // (no REQUIRE in a coroutine)
    if (opened.ok()) v2 = *opened;
    co_return Status::Ok();
  });
  auto opened = RunSim(env, LsmVolume::Open(env, view, w.OptionsFor(env, "base")));
  REQUIRE(opened.ok());
  v1 = *opened;
  deleting = true;
  Status st = RunSim(env, v1->DeleteSnapshot("gold"));
  REQUIRE(v2);
  CHECK_FALSE(st.ok());
  CHECK(v1->fenced());
  REQUIRE(v2->ListSnapshots().size() == 1);
  // Still a snapshot: it clones (was Busy), reads as it was, and deletes.
  Status clone = RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c"));
  INFO(clone.ToString());
  REQUIRE(clone.ok());
  auto c = w.Open(env, "c");
  CHECK(Read(env, *c, 0, 65536) == Pattern(3, 65536));
  w.Close(env, c);
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("c"))).ok());
  REQUIRE(RunSim(env, v2->DeleteSnapshot("gold")).ok());
  CHECK(v2->ListSnapshots().empty());
  (void)RunSim(env, v1->Close());
  w.Close(env, v2);
}

TEST_CASE("a snapshot delete that failed before its commit withdraws its mark", "[volume][clone]") {
  // The mark landed, but the references could not be listed (the store kept failing):
  // nothing was deleted, so nothing may stay marked.
  SimEnv env;
  CloneWorld w(kSize);
  bool failing = false;
  HookClones view(w.Store("base"), [&](const std::string&, bool is_list) -> Task<Status> {
    co_return failing&& is_list ? Status::Unavailable("injected: listing fails") : Status::Ok();
  });
  auto opened = RunSim(env, LsmVolume::Open(env, view, w.OptionsFor(env, "base")));
  REQUIRE(opened.ok());
  auto v = *opened;
  REQUIRE(RunSim(env, v->Write(0, Pattern(4, 65536), {})).ok());
  REQUIRE(RunSim(env, v->CreateSnapshot("gold")).ok());
  failing = true;
  Status st = RunSim(env, v->DeleteSnapshot("gold"));
  failing = false;
  CHECK(st.IsUnavailable());
  CHECK_FALSE(v->fenced());
  CHECK(v->ListSnapshots().size() == 1);
  Status clone = RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c"), "c"));
  INFO(clone.ToString());
  CHECK(clone.ok());  // was Busy: the failed delete's mark stayed
  w.Close(env, v);
}

TEST_CASE("deleting the parent keeps what its clones need, and the last clone deleted frees all",
          "[volume][clone]") {
  SimEnv env;
  CloneWorld w(kSize);
  auto parent = w.Open(env, "base");
  REQUIRE(RunSim(env, parent->Write(0, Pattern(6, kSize), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("s1")).ok());
  const auto s1 = Read(env, *parent, 0, kSize);
  REQUIRE(RunSim(env, parent->Write(0, Pattern(7, kSize), {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("s2")).ok());
  REQUIRE(RunSim(env, parent->Write(0, Pattern(8, kSize), {})).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "s1", w.Store("a"), "a")).ok());
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "s1", w.Store("b"), "b")).ok());
  w.Close(env, parent);
  const uint64_t before = w.Store("base").total_bytes();
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("base"))).ok());
  CHECK(w.Store("base").total_bytes() < before / 2);  // s2's and the live map's data went
  CHECK(!RunSim(env, LsmVolume::Open(env, w.Store("base"), w.options())).ok());  // deleted
  Status refused = RunSim(env, CreateClone(env, w.resolver(), "base", "s1", w.Store("n"), "n"));
  CHECK(!refused.ok());
  auto a = w.Open(env, "a");
  CHECK(Read(env, *a, 0, kSize) == s1);
  w.Close(env, a);
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("a"))).ok());
  CHECK(w.Store("base").total_bytes() > 0);  // b still reads it
  auto b = w.Open(env, "b");
  CHECK(Read(env, *b, 0, kSize) == s1);
  w.Close(env, b);
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("b"))).ok());
  CHECK(w.Store("b").total_bytes() == 0);
  CHECK(w.Store("base").total_bytes() == 0);
}

}  // namespace
}  // namespace portal::volume

namespace portal::volume {
namespace {

TEST_CASE("clones of an encrypted volume: created, read and deleted under the volumes' key",
          "[volume][clone][crypto]") {
  SimEnv env;
  auto ring = crypto::Keyring::FromKeys({std::string(32, 'k')});
  REQUIRE(ring.ok());
  CloneWorld w(kSize);
  w.options().keyring = ring->get();
  auto parent = w.Open(env, "base");
  const auto a = Pattern(7, 128 * 1024);
  REQUIRE(RunSim(env, parent->Write(8192, a, {})).ok());
  REQUIRE(RunSim(env, parent->CreateSnapshot("gold")).ok());
  const auto snap = Read(env, *parent, 0, kSize);
  REQUIRE(RunSim(env, CreateClone(env, w.resolver(), "base", "gold", w.Store("c1"), "c1",
                                  ring->get()))
              .ok());
  auto clone = w.Open(env, "c1");
  CHECK(Read(env, *clone, 0, kSize) == snap);
  w.Close(env, clone);
  clone = w.Open(env, "c1");  // reopened: the base is read again, sealed
  CHECK(Read(env, *clone, 0, kSize) == snap);
  w.Close(env, clone);
  w.Close(env, parent);
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("base"), ring->get())).ok());
  REQUIRE(RunSim(env, DeleteVolume(env, w.resolver(), w.Store("c1"), ring->get())).ok());
  CHECK(RunSim(env, w.Store("base").List("", "")).value().empty());
  CHECK(RunSim(env, w.Store("c1").List("", "")).value().empty());
}

}  // namespace
}  // namespace portal::volume
