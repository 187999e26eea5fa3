#include "objstore/prefix_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

namespace portal::objstore {
namespace {

std::vector<std::string> Keys(const std::vector<ObjectInfo>& listed) {
  std::vector<std::string> keys;
  for (const auto& o : listed) keys.push_back(o.key);
  return keys;
}

TEST_CASE("prefix store: keys land under the prefix and list back stripped",
          "[objstore][prefix]") {
  SimEnv env;
  MemoryStore inner;
  PrefixStore a(inner, "volumes/a/");
  PrefixStore b(inner, "volumes/b/");
  REQUIRE(RunSim(env, a.Put("manifest/1", "A")).ok());
  REQUIRE(RunSim(env, b.Put("manifest/1", "B")).ok());
  REQUIRE(RunSim(env, inner.Put("manifest/1", "root")).ok());
  REQUIRE(RunSim(env, inner.Put("volumes/ab/manifest/1", "AB")).ok());

  CHECK(*RunSim(env, a.Get("manifest/1")) == "A");
  CHECK(*RunSim(env, b.Get("manifest/1")) == "B");
  CHECK(*RunSim(env, inner.Get("volumes/a/manifest/1")) == "A");
  CHECK(Keys(*RunSim(env, a.List(""))) == std::vector<std::string>{"manifest/1"});
  CHECK(Keys(*RunSim(env, a.List("manifest/"))) == std::vector<std::string>{"manifest/1"});
  CHECK(RunSim(env, a.List("", "manifest/1"))->empty());
  CHECK(RunSim(env, a.Head("manifest/1"))->key == "manifest/1");

  // Conditional create and delete stay inside the view.
  CHECK(RunSim(env, a.PutIfAbsent("manifest/1", "again")).IsPreconditionFailed());
  REQUIRE(RunSim(env, a.PutIfAbsent("manifest/2", "A2")).ok());
  REQUIRE(RunSim(env, a.Delete("manifest/1")).ok());
  CHECK(*RunSim(env, b.Get("manifest/1")) == "B");
  CHECK(*RunSim(env, inner.Get("manifest/1")) == "root");
  CHECK(Keys(*RunSim(env, a.List(""))) == std::vector<std::string>{"manifest/2"});
}

TEST_CASE("prefix store: the view's keys are validated before the prefix is added",
          "[objstore][prefix]") {
  SimEnv env;
  MemoryStore inner;
  PrefixStore a(inner, "volumes/a/");
  CHECK(RunSim(env, a.Put("", "x")).code() == Status::Code::kInvalidArgument);
  CHECK(RunSim(env, a.Get("")).status().code() == Status::Code::kInvalidArgument);
  CHECK(RunSim(env, a.Delete("")).code() == Status::Code::kInvalidArgument);
  // The prefix makes a maximal key too long for the store beneath.
  CHECK(RunSim(env, a.Put(std::string(kMaxKeyBytes, 'k'), "x")).code() ==
        Status::Code::kInvalidArgument);
  CHECK(RunSim(env, inner.List(""))->empty());
}

TEST_CASE("prefix store: url names the view", "[objstore][prefix]") {
  MemoryStore inner;
  CHECK(PrefixStore(inner, "volumes/a/").url() == inner.url() +
                                                       (inner.url().ends_with('/') ? "" : "/") +
                                                       "volumes/a");
}

}  // namespace
}  // namespace portal::objstore
