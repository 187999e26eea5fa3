// The control protocol's TCP handshake: token files and the first line of a connection.
#include "control/auth.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "testing/testing.h"

namespace portal::control {
namespace {

constexpr std::string_view kToken = "0123456789abcdef0123456789abcdef";  // 32 bytes

std::string WriteFile(const testing::TempDir& dir, const std::string& name, const std::string& text,
                      mode_t mode) {
  const std::string path = dir.Join(name);
  std::ofstream(path) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  return path;
}

TEST_CASE(
    "a token file loses its trailing newline, and short, world-readable or binary ones are refused",
    "[control][auth]") {
  testing::TempDir dir;
  auto ok = LoadTokenFile(WriteFile(dir, "ok", std::string(kToken) + "\n", 0600));
  REQUIRE(ok.ok());
  CHECK(*ok == kToken);
  CHECK(LoadTokenFile(WriteFile(dir, "group", std::string(kToken), 0640)).ok());

  auto world = LoadTokenFile(WriteFile(dir, "world", std::string(kToken), 0644));
  REQUIRE(world.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(world.status().message(), Catch::Contains("readable by every user"));
  CHECK_THAT(world.status().message(), Catch::Contains("token_file"));

  auto shrt = LoadTokenFile(WriteFile(dir, "short", std::string(kToken.substr(1)), 0600));
  REQUIRE(shrt.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(shrt.status().message(), Catch::Contains("at least 32"));

  auto bin = LoadTokenFile(WriteFile(dir, "bin", std::string(kToken) + " x", 0600));
  CHECK(bin.status().code() == Status::Code::kInvalidArgument);
  CHECK(LoadTokenFile(WriteFile(dir, "long", std::string(5000, 'a'), 0600)).status().code() ==
        Status::Code::kInvalidArgument);
  CHECK(LoadTokenFile(dir.Join("missing")).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("tokens compare equal only when equal", "[control][auth]") {
  CHECK(TokenEquals(kToken, kToken));
  CHECK_FALSE(TokenEquals(kToken, ""));
  CHECK_FALSE(TokenEquals(kToken, std::string(kToken) + "0"));
  std::string flipped(kToken);
  flipped[31] = 'e';
  CHECK_FALSE(TokenEquals(kToken, flipped));
}

TEST_CASE("the first line must be auth with the right token", "[control][auth]") {
  std::string id;
  CHECK_FALSE(CheckAuthLine(EncodeAuthRequest(kToken), kToken, &id).has_value());
  CHECK_FALSE(
      CheckAuthLine(R"({"op":"auth","token":")" + std::string(kToken) + R"(","id":4})", kToken, &id)
          .has_value());
  CHECK(id == "4");

  auto expect_refused = [&](const std::string& line, std::string_view says) {
    auto err = CheckAuthLine(line, kToken, &id);
    REQUIRE(err.has_value());
    CHECK(err->code == kUnauthenticated);
    CHECK_THAT(err->message, Catch::Contains(std::string(says)));
  };
  expect_refused(EncodeAuthRequest("not the token"), "wrong token");
  expect_refused(R"({"op":"status"})", "authenticate first");
  expect_refused(R"({"op":"snapshot.create","name":"s","volume":"v","id":"x"})",
                 "authenticate first");
  CHECK(id == "\"x\"");  // the refusal still carries the request's id
  expect_refused("not json", "first request must be");
  expect_refused(R"({"op":"auth"})", "needs a 'token'");
  expect_refused(R"({"op":"auth","token":7})", "needs a 'token'");
  expect_refused(R"({"op":"auth","token":"x","name":"y"})", "unknown auth field");
}

TEST_CASE("an auth request encodes as one JSON line", "[control][auth]") {
  CHECK(EncodeAuthRequest("abc") == "{\"op\":\"auth\",\"token\":\"abc\"}\n");
}

}  // namespace
}  // namespace portal::control
