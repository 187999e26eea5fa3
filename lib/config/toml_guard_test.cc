#include "config/toml_guard.h"

#include <catch2/catch.hpp>
#include <string>

namespace portal::config {
namespace {

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::string Key(size_t parts) {
  std::string key = "a";
  key += Repeat(".a", parts - 1);
  return key;
}

const std::string k16 = Key(16), k17 = Key(17), k100 = Key(100);

std::string Message(const std::string& text) {
  Status st = CheckTomlShape(text, "f.toml");
  return st.ok() ? "ok" : st.message();
}

TEST_CASE("toml guard: keys of up to 16 dotted parts pass and 17 fail naming the line",
          "[config]") {
  CHECK(Message(k16 + " = 1\n") == "ok");
  CHECK(Message("[" + k16 + "]\n") == "ok");
  CHECK(Message("[[" + k16 + "]]\n") == "ok");
  CHECK(Message("x = { " + k16 + " = 1, " + k16 + " = 2 }\n") == "ok");
  const std::string err = "a key has more than 16 dotted parts (at most 16)";
  CHECK(Message("\n\n" + k17 + " = 1\n") == "f.toml:3: " + err);
  CHECK(Message("[" + k17 + "]\n") == "f.toml:1: " + err);
  CHECK(Message("# x\n[[" + k17 + "]]\n") == "f.toml:2: " + err);
  CHECK(Message("x = { a = 1, " + k17 + " = 2 }\n") == "f.toml:1: " + err);
  CHECK(Message("x = [ 1, { " + k17 + " = 2 } ]\n") == "f.toml:1: " + err);
  // Whitespace around the dots does not hide a part.
  CHECK(Message(Key(1) + Repeat(" . a", 16) + " = 1\n") == "f.toml:1: " + err);
  // Each key counts on its own.
  CHECK(Message(Repeat(k16 + " = 1\n", 100)) == "ok");
}

TEST_CASE("toml guard: dots in values, strings and comments are not key parts", "[config]") {
  CHECK(Message("x = 0.5\ny = 1979-05-27T07:32:00.999\n") == "ok");
  CHECK(Message("x = [" + Repeat("1.5, ", 100) + "]\n") == "ok");
  CHECK(Message("x = \"" + k100 + "\"\n") == "ok");
  CHECK(Message("x = '" + k100 + "'\n") == "ok");
  CHECK(Message("\"" + k100 + "\" = 1\n") == "ok");
  CHECK(Message("'" + k100 + "'.b = 1\n") == "ok");
  CHECK(Message("x = 1 # " + k100 + "\n") == "ok");
  CHECK(Message("# " + k100 + "\n") == "ok");
  CHECK(Message("x = \"\"\"\n" + k100 + "\n\"\"\"\n") == "ok");
  CHECK(Message("x = \"a \\\" " + k100 + "\"\n") == "ok");  // escaped quote
}

TEST_CASE("toml guard: nesting of up to 16 passes and 17 fails naming the line", "[config]") {
  CHECK(Message("x = " + Repeat("[", 16) + Repeat("]", 16) + "\n") == "ok");
  CHECK(Message("x = " + Repeat("{a=", 16) + "1" + Repeat("}", 16) + "\n") == "ok");
  const std::string err =
      "more than 16 nested arrays, inline tables or table brackets (at most 16)";
  CHECK(Message("\nx = " + Repeat("[", 17) + Repeat("]", 17) + "\n") == "f.toml:2: " + err);
  CHECK(Message("x = " + Repeat("{a=", 17) + "1" + Repeat("}", 17) + "\n") == "f.toml:1: " + err);
  // An array spanning lines: the line of the 17th bracket.
  CHECK(Message("x = [\n" + Repeat("[\n", 16)) == "f.toml:17: " + err);
  // Closed brackets free their level; many siblings are fine.
  CHECK(Message("x = [" + Repeat("[[1]], ", 1000) + "]\n") == "ok");
  // Mismatched closers are toml++'s to report; they still end a level here.
  CHECK(Message("x = " + Repeat("[}", 100) + "\n") == "ok");
}

TEST_CASE("toml guard: brackets inside strings and comments do not nest", "[config]") {
  const std::string deep = Repeat("[{", 100);
  CHECK(Message("x = \"" + deep + "\"\n") == "ok");
  CHECK(Message("x = '" + deep + "'\n") == "ok");
  CHECK(Message("x = '''" + deep + "\n" + deep + "'''\n") == "ok");
  CHECK(Message("x = \"\"\"" + deep + "\\\n" + deep + "\"\"\"\n") == "ok");
  CHECK(Message("x = 1 # " + deep + "\n") == "ok");
  // A multi-line string's closing quotes may be followed by two more of its content:
  // the brackets after them are outside any string.
  CHECK(Message("x = [\"\"\"a\"\"\"\"\", " + Repeat("[", 17) + "\n").find("nested") !=
        std::string::npos);
  CHECK(Message("x = ['''a''''', " + Repeat("[", 17) + "\n").find("nested") != std::string::npos);
  // An unterminated string ends at its line.
  CHECK(Message("x = \"abc\ny = " + Repeat("[", 17) + "\n").find("f.toml:2:") != std::string::npos);
}

TEST_CASE("toml guard: text over 1 MiB is refused and the error says the bound", "[config]") {
  CHECK(Message(std::string(kMaxConfigBytes, '\n')) == "ok");
  CHECK(Message(std::string(kMaxConfigBytes + 1, '\n')) ==
        "f.toml: the file is larger than 1048576 bytes (1 MiB), the most a configuration "
        "file may be");
}

}  // namespace
}  // namespace portal::config
