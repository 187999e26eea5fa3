#include "util/log.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <string>

namespace portal::log {
namespace {

std::string FormatOne(Format format, spdlog::level::level_enum level, std::string_view message) {
  spdlog::details::log_msg msg("portalbd::nbd", level, message);
  msg.time = std::chrono::system_clock::time_point(std::chrono::microseconds(1767754682656272));
  spdlog::memory_buf_t out;
  MakeFormatter(format)->format(msg, out);
  return std::string(out.data(), out.size());
}

TEST_CASE("text log lines keep the original's layout", "[util]") {
  CHECK(FormatOne(Format::kText, spdlog::level::info, "NBD server listening address=1.2.3.4:5") ==
        "2026-01-07T02:58:02.656272Z  INFO portalbd::nbd: NBD server listening "
        "address=1.2.3.4:5\n");
  CHECK(FormatOne(Format::kText, spdlog::level::err, "x") ==
        "2026-01-07T02:58:02.656272Z ERROR portalbd::nbd: x\n");
}

TEST_CASE("json log lines are one object with the text line's fields", "[util]") {
  const std::string line =
      FormatOne(Format::kJson, spdlog::level::warn, "store failing error=\"NoSpace\"");
  REQUIRE(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  const auto j = nlohmann::json::parse(line);
  CHECK(j == nlohmann::json{{"timestamp", "2026-01-07T02:58:02.656272Z"},
                            {"level", "WARN"},
                            {"target", "portalbd::nbd"},
                            {"message", "store failing error=\"NoSpace\""}});
}

TEST_CASE("json log lines escape newlines, control bytes and bad UTF-8 from peers", "[util]") {
  // An export name from a client may hold any byte; the line must stay one valid object.
  const std::string message = std::string("export=\"a\nb\\c\x01\"") + "\xff\xfe" + " caf\xc3\xa9";
  const std::string line = FormatOne(Format::kJson, spdlog::level::info, message);
  CHECK(line.find('\n') == line.size() - 1);
  const auto j = nlohmann::json::parse(line);
  CHECK(j["message"] == "export=\"a\nb\\c\x01\"\xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9");
  CHECK(j["level"] == "INFO");
}

TEST_CASE("log format names", "[util]") {
  CHECK(ParseFormat("text") == Format::kText);
  CHECK(ParseFormat("json") == Format::kJson);
  CHECK(!ParseFormat("JSON").has_value());
  CHECK(!ParseFormat("").has_value());
}

}  // namespace
}  // namespace portal::log
