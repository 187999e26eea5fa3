#include "objstore/object_store.h"

#include <catch2/catch.hpp>

#include "env/sim_env.h"

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

}  // namespace
}  // namespace portal::objstore
