// StoreHealth: whether the store takes one kind of the volume's writes (segment uploads,
// for `portalctl status`; map maintenance), and the log of it. While uploads fail (and
// are retried), FLUSH and FUA wait; this says since when and why, and rations the log so
// that a long outage is visible without a line per retry:
//   - one WARN line when the first attempt fails,
//   - at most one WARN line per kRepeatNs while it goes on (with the count of attempts),
//   - one INFO line when an upload succeeds again, with how long the failure lasted.
// Fencing (a newer writer's segment) is not a store failure; callers do not report it.
//
// Not thread-safe: the volume guards it with its mutex. Times come from the caller (Env).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/status.h"

namespace portal::volume {

class StoreHealth {
 public:
  static constexpr uint64_t kRepeatNs = 60ull * 1000 * 1000 * 1000;

  // `what` failed ("segment upload"); `consequence` follows "retrying" in the first line
  // (", and FLUSH/FUA wait until it succeeds").
  StoreHealth(std::string what, std::string consequence)
      : what_(std::move(what)), consequence_(std::move(consequence)) {}

  struct State {
    bool failing = false;
    int64_t since_wall_ns = 0;  // wall clock of the first failed attempt (when failing)
    uint64_t failed_attempts = 0;
    std::string error;  // the last attempt's error
  };

  // A failed attempt on `key` (may be empty), at monotonic `now_ns` and wall clock `wall_ns`.
  // Returns a line to log as a warning, when one is due.
  std::optional<std::string> Failed(const Status& error, std::string_view key, uint64_t now_ns,
                                    int64_t wall_ns);
  // An upload succeeded. Returns a line to log (info) when this ends a failure.
  std::optional<std::string> Succeeded(uint64_t now_ns);

  const State& state() const { return state_; }

 private:
  const std::string what_;
  const std::string consequence_;
  State state_;
  uint64_t since_ns_ = 0;
  uint64_t last_logged_ns_ = 0;
};

// "45s", "3m12s", "2h5m": a duration for people.
std::string FormatDuration(uint64_t ns);

}  // namespace portal::volume
