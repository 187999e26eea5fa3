#include "s3/options.h"

#include <catch2/catch.hpp>
#include <map>

namespace portal::s3 {
namespace {

EnvLookup Vars(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST_CASE("client options come from the AWS_* variables", "[s3client]") {
  auto o = ClientOptionsFromEnv(Vars({{"AWS_ACCESS_KEY_ID", "AK"},
                                      {"AWS_SECRET_ACCESS_KEY", "SK"},
                                      {"AWS_SESSION_TOKEN", "TOK"},
                                      {"AWS_DEFAULT_REGION", "eu-west-1"},
                                      {"AWS_ENDPOINT", "http://127.0.0.1:9000"},
                                      {"AWS_ALLOW_HTTP", "true"}}));
  REQUIRE(o.ok());
  CHECK(o->access_key_id == "AK");
  CHECK(o->secret_access_key == "SK");
  CHECK(o->session_token == "TOK");
  CHECK(o->region == "eu-west-1");
  CHECK(o->endpoint == "http://127.0.0.1:9000");
  CHECK(o->allow_http);
  CHECK_FALSE(o->path_style.has_value());  // decided by the client: endpoint -> path-style
}

TEST_CASE("AWS_REGION beats AWS_DEFAULT_REGION, AWS_ENDPOINT_URL beats AWS_ENDPOINT",
          "[s3client]") {
  auto o = ClientOptionsFromEnv(Vars({{"AWS_REGION", "a"},
                                      {"AWS_DEFAULT_REGION", "b"},
                                      {"AWS_ENDPOINT_URL", "https://x"},
                                      {"AWS_ENDPOINT", "https://y"}}));
  REQUIRE(o.ok());
  CHECK(o->region == "a");
  CHECK(o->endpoint == "https://x");
  CHECK(ClientOptionsFromEnv(Vars({}))->region == "us-east-1");
  CHECK_FALSE(ClientOptionsFromEnv(Vars({}))->allow_http);
}

TEST_CASE("AWS_CA_BUNDLE names the CA file, unset keeps the system's CAs", "[s3client]") {
  CHECK(ClientOptionsFromEnv(Vars({{"AWS_CA_BUNDLE", "/etc/ca.pem"}}))->ca_file == "/etc/ca.pem");
  CHECK(ClientOptionsFromEnv(Vars({}))->ca_file.empty());
  CHECK(ClientOptionsFromEnv(Vars({{"AWS_CA_BUNDLE", ""}}))->ca_file.empty());
}

TEST_CASE("a bad AWS_ALLOW_HTTP is named in the error", "[s3client]") {
  auto o = ClientOptionsFromEnv(Vars({{"AWS_ALLOW_HTTP", "yes please"}}));
  REQUIRE_FALSE(o.ok());
  CHECK(o.status().message().find("AWS_ALLOW_HTTP") != std::string::npos);
}

}  // namespace
}  // namespace portal::s3
