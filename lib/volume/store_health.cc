#include "volume/store_health.h"

#include <fmt/format.h>

#include "util/rfc3339.h"
#include "volume/manifest.h"

namespace portal::volume {

std::string FormatDuration(uint64_t ns) {
  const uint64_t s = ns / 1'000'000'000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{}s", s / 60, s % 60);
  return fmt::format("{}h{}m", s / 3600, s % 3600 / 60);
}

std::optional<std::string> StoreHealth::Failed(const Status& error, std::string_view key,
                                               uint64_t now_ns, int64_t wall_ns) {
  ++state_.failed_attempts;
  state_.error = error.ToString();
  const std::string key_field = key.empty() ? "" : fmt::format(" key={}", key);
  if (!state_.failing) {
    state_.failing = true;
    state_.since_wall_ns = wall_ns;
    since_ns_ = last_logged_ns_ = now_ns;
    return fmt::format("store failing: {} failed; retrying{}{} error=\"{}\"", what_, consequence_,
                       key_field, state_.error);
  }
  if (now_ns - last_logged_ns_ < kRepeatNs) return std::nullopt;
  last_logged_ns_ = now_ns;
  return fmt::format("store still failing since {} ({}, {} failed attempts): {}{} error=\"{}\"",
                     FormatRfc3339(state_.since_wall_ns), FormatDuration(now_ns - since_ns_),
                     state_.failed_attempts, what_, key_field, state_.error);
}

std::optional<std::string> StoreHealth::Succeeded(uint64_t now_ns) {
  if (!state_.failing) return std::nullopt;
  std::string line =
      fmt::format("store recovered: {} succeeds again after failing for {} ({} failed attempts)",
                  what_, FormatDuration(now_ns - since_ns_), state_.failed_attempts);
  state_ = State{};
  return line;
}

}  // namespace portal::volume
