#include "util/log.h"

#include <mutex>
#include <string>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace portal::log {
namespace {

// "%*": the level in upper case, right-aligned to five columns, as Rust's tracing prints.
class PaddedLevel final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view text;
    switch (msg.level) {
      case spdlog::level::trace: text = "TRACE"; break;
      case spdlog::level::debug: text = "DEBUG"; break;
      case spdlog::level::info: text = " INFO"; break;
      case spdlog::level::warn: text = " WARN"; break;
      case spdlog::level::err: text = "ERROR"; break;
      case spdlog::level::critical: text = "ERROR"; break;
      default: text = "  OFF"; break;
    }
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PaddedLevel>();
  }
};

std::mutex g_mu;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_level = spdlog::level::info;

spdlog::sink_ptr SinkLocked() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto formatter = std::make_unique<spdlog::pattern_formatter>(
        spdlog::pattern_time_type::utc, std::string("\n"));
    formatter->add_flag<PaddedLevel>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %* %n: %v");
    g_sink->set_formatter(std::move(formatter));
  }
  return g_sink;
}

}  // namespace

void Init(std::string_view level) {
  std::lock_guard lock(g_mu);
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str returns "off" for unknown names; only accept "off" when asked for.
  if (parsed == spdlog::level::off && level != "off") parsed = spdlog::level::info;
  g_level = parsed;
  SinkLocked();
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
