#include "objstore/object_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "util/buffer_pool.h"

namespace portal::objstore {
namespace {

TEST_CASE("OpenStore parses storage URLs", "[objstore]") {
  SimEnv env;
  CHECK(OpenStore("memory://", env).value()->url() == "memory://");
  CHECK(OpenStore("file:///tmp/x/", env).value()->url() == "file:///tmp/x");
  CHECK(OpenStore("file://relative/dir", env).status().code() == Status::Code::kInvalidArgument);
  CHECK(OpenStore("gopher://x", env).status().code() == Status::Code::kInvalidArgument);
  CHECK(OpenStore("s3://", env).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("OpenStore refuses s3 without credentials, in one line", "[objstore]") {
  SimEnv env;
  StoreOptions o;
  o.s3.emplace();  // no credentials
  auto s = OpenStore("s3://bucket/prefix", env, o);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().message() ==
        "storage URL s3://bucket/prefix: no S3 credentials: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY");
}

// No process-wide pool: the one given through StoreOptions gets the store's buffers back.
TEST_CASE("stores give buffers back to the pool they were opened with", "[objstore]") {
  SimEnv env;
  const std::string big(2 << 20, 'b');
  for (const std::string& url : {std::string("memory://")}) {
    INFO(url);
    BufferPool pool(64 << 20);
    StoreOptions o;
    o.buffer_pool = &pool;
    auto store = OpenStore(url, env, o);
    REQUIRE(store.ok());
    ObjectStore& s = **store;
    REQUIRE(BlockOn(s.Put("a", big)).ok());
    REQUIRE(BlockOn(s.Put("a", big)).ok());  // memory:// drops the first copy
    REQUIRE(BlockOn(s.Delete("a")).ok());    // and the second
    CHECK(pool.pooled_bytes() >= (2u << 20));
    // A rope is kept as pieces.
    Rope rope;
    rope.Append(std::make_shared<const std::string>(big));
    rope.Append(std::make_shared<const std::string>(big));
    REQUIRE(BlockOn(s.PutIfAbsentRope("r", rope)).ok());
    CHECK(*BlockOn(s.Get("r")) == big + big);
  }
}

}  // namespace
}  // namespace portal::objstore
