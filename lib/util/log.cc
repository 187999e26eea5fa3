#include "util/log.h"

#include <chrono>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "util/rfc3339.h"

namespace portal::log {
namespace {

// The level as Rust's tracing names it.
std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "TRACE";
    case spdlog::level::debug: return "DEBUG";
    case spdlog::level::info: return "INFO";
    case spdlog::level::warn: return "WARN";
    case spdlog::level::err: return "ERROR";
    case spdlog::level::critical: return "ERROR";
    default: return "OFF";
  }
}

// "%*": the level right-aligned to five columns, as Rust's tracing prints it.
class PaddedLevel final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string_view text = LevelName(msg.level);
    for (size_t i = text.size(); i < 5; ++i) dest.push_back(' ');
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PaddedLevel>();
  }
};

// One JSON object per line with the text line's fields. Built with nlohmann::json, whose
// dump escapes quotes, backslashes and control characters; invalid UTF-8 is replaced
// rather than thrown on, since messages carry bytes from peers.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        msg.time.time_since_epoch()).count();
    nlohmann::ordered_json line;
    line["timestamp"] = FormatRfc3339(ns);
    line["level"] = LevelName(msg.level);
    line["target"] = std::string(msg.logger_name.data(), msg.logger_name.size());
    line["message"] = std::string(msg.payload.data(), msg.payload.size());
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::mutex g_mu;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_level = spdlog::level::info;

spdlog::sink_ptr SinkLocked() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    g_sink->set_formatter(MakeFormatter(Format::kText));
  }
  return g_sink;
}

}  // namespace

std::optional<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return std::nullopt;
}

std::unique_ptr<spdlog::formatter> MakeFormatter(Format format) {
  if (format == Format::kJson) return std::make_unique<JsonFormatter>();
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc,
                                                               std::string("\n"));
  formatter->add_flag<PaddedLevel>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %* %n: %v");
  return formatter;
}

void Init(std::string_view level, Format format) {
  std::lock_guard lock(g_mu);
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str returns "off" for unknown names; only accept "off" when asked for.
  if (parsed == spdlog::level::off && level != "off") parsed = spdlog::level::info;
  g_level = parsed;
  SinkLocked()->set_formatter(MakeFormatter(format));
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
}

std::shared_ptr<spdlog::logger> Get(std::string_view target) {
  std::string name(target);
  if (auto existing = spdlog::get(name)) return existing;
  std::lock_guard lock(g_mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, SinkLocked());
  logger->set_level(g_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace portal::log
