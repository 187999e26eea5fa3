#include "config/config.h"

#include <catch2/catch.hpp>

namespace portal::config {
namespace {

Status ParseAndValidate(const std::string& text, Config* out) {
  std::vector<std::string> warnings;
  auto c = ParseToml(text, "test.toml", Config{}, &warnings);
  if (!c.ok()) return c.status();
  *out = *c;
  return Validate(*c);
}

TEST_CASE("[storage] stop_timeout_ms: default 60 s, bounded 1 s to 1 h", "[config]") {
  Config c;
  REQUIRE(ParseAndValidate("", &c).ok());
  CHECK(c.stop_timeout_ms == 60'000);
  REQUIRE(ParseAndValidate("[storage]\nstop_timeout_ms = 3000\n", &c).ok());
  CHECK(c.stop_timeout_ms == 3000);
  Status st = ParseAndValidate("[storage]\nstop_timeout_ms = 500\n", &c);
  CHECK(st.code() == Status::Code::kInvalidArgument);
  CHECK(st.message().find("storage.stop_timeout_ms must be between 1000 and 3600000") !=
        std::string::npos);
  for (const char* bad :
       {"[storage]\nstop_timeout_ms = 3600001\n", "[storage]\nstop_timeout_ms = \"60s\"\n"}) {
    CHECK(ParseAndValidate(bad, &c).code() == Status::Code::kInvalidArgument);
  }
}

}  // namespace
}  // namespace portal::config
