// ParseToml and LoadFile against hostile files: each fails with a message naming the line
// or the bound, never with a crash.
#include "config/config.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "testing/testing.h"

namespace portal::config {
namespace {

// Parse + Validate, as portalbd does for a file.
Status Check(const std::string& text) {
  std::vector<std::string> warnings;
  auto c = ParseToml(text, "test.toml", Config{}, &warnings);
  return c.ok() ? Validate(*c) : c.status();
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

bool Mentions(const Status& st, const std::string& what) {
  return st.ToString().find(what) != std::string::npos;
}

TEST_CASE("a key of 50000 dotted parts is an error naming its line and not a stack overflow",
          "[config]") {
  std::string key = "a";
  key += Repeat(".a", 49'999);  // 100 KB
  for (const std::string& text : {"# comment\n\n" + key + " = 1\n", "# comment\n\n[" + key + "]\n",
                                  "# comment\n\nx = { " + key + " = 1 }\n"}) {
    Status st = Check(text);
    REQUIRE_FALSE(st.ok());
    CHECK(Mentions(st, "test.toml:3"));
    CHECK(Mentions(st, "dotted parts"));
  }
}

TEST_CASE("deeply nested arrays and inline tables are an error naming their line", "[config]") {
  for (size_t n : {17u, 300u, 100'000u}) {
    INFO(n);
    for (const std::string& text : {"\nx = " + Repeat("[", n) + Repeat("]", n) + "\n",
                                    "\nx = " + Repeat("{a=", n) + "1" + Repeat("}", n) + "\n",
                                    "\nx = " + Repeat("[{a=", n) + "1" + Repeat("}]", n) + "\n"}) {
      Status st = Check(text);
      REQUIRE_FALSE(st.ok());
      CHECK(Mentions(st, "test.toml:2"));
      CHECK(Mentions(st, "nested"));
      CHECK(Mentions(st, "at most 16"));
    }
  }
}

TEST_CASE("a configuration larger than 1 MiB is refused and the error says the bound", "[config]") {
  std::string big = "# ";
  big += Repeat("x", (1 << 20) - 3);
  big += "\n";  // exactly 1 MiB
  REQUIRE(big.size() == (1u << 20));
  CHECK(Check(big).ok());
  Status st = Check(big + "\n");
  REQUIRE_FALSE(st.ok());
  CHECK(Mentions(st, "1 MiB"));

  testing::TempDir dir;
  const std::string path = dir.Join("big.toml");
  std::ofstream(path) << big << "\n";
  std::vector<std::string> warnings;
  auto loaded = LoadFile(path, Config{}, &warnings);
  REQUIRE_FALSE(loaded.ok());
  CHECK(Mentions(loaded.status(), "1 MiB"));
  CHECK(Mentions(loaded.status(), path));
  // A file that never ends is not read to the end.
  auto endless = LoadFile("/dev/zero", Config{}, &warnings);
  REQUIRE_FALSE(endless.ok());
  CHECK(Mentions(endless.status(), "1 MiB"));
}

}  // namespace
}  // namespace portal::config
