#include "objstore/counting_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

namespace portal::objstore {
namespace {

TEST_CASE("counting store: calls, errors and bytes by kind", "[objstore][counting]") {
  SimEnv env;
  CountingStore s(std::make_unique<MemoryStore>());
  REQUIRE(RunSim(env, s.Put("a", "12345")).ok());
  REQUIRE(RunSim(env, s.Put("b", "123")).ok());
  REQUIRE(RunSim(env, s.PutIfAbsent("c", "1")).ok());
  CHECK(RunSim(env, s.PutIfAbsent("c", "22")).IsPreconditionFailed());
  REQUIRE(RunSim(env, s.Get("a")).ok());
  REQUIRE(RunSim(env, s.Get("a", GetRange{1, 2})).ok());
  CHECK(RunSim(env, s.Get("missing")).status().IsNotFound());
  REQUIRE(RunSim(env, s.Head("b")).ok());
  REQUIRE(RunSim(env, s.List("")).ok());
  REQUIRE(RunSim(env, s.Delete("zzz")).ok());

  StoreStats st = s.stats();
  CHECK(st[OpKind::kPut] == OpStats{2, 0, 8});
  CHECK(st[OpKind::kPutIfAbsent] == OpStats{2, 1, 1});
  CHECK(st[OpKind::kGet] == OpStats{3, 1, 7});
  CHECK(st[OpKind::kHead] == OpStats{1, 0, 0});
  CHECK(st[OpKind::kList] == OpStats{1, 0, 3});  // entries
  CHECK(st[OpKind::kDelete] == OpStats{1, 0, 0});
  CHECK(st.Total() == OpStats{10, 2, 19});
  CHECK(st.ToString() ==
        "GET calls=3 errors=1 bytes=7 HEAD calls=1 errors=0 bytes=0 PUT calls=2 errors=0 "
        "bytes=8 PUT_IF_ABSENT calls=2 errors=1 bytes=1 DELETE calls=1 errors=0 bytes=0 "
        "LIST calls=1 errors=0 bytes=3");

  REQUIRE(RunSim(env, s.Put("d", "xy")).ok());
  StoreStats delta = s.stats().Since(st);
  CHECK(delta[OpKind::kPut] == OpStats{1, 0, 2});
  CHECK(delta.Total() == OpStats{1, 0, 2});
}

}  // namespace
}  // namespace portal::objstore
