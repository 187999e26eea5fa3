#include "util/rfc3339.h"

#include <ctime>

#include <fmt/format.h>

namespace portal {

std::string FormatRfc3339(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  int64_t micros = (ns % 1'000'000'000) / 1000;
  if (micros < 0) {
    micros += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:06d}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

}  // namespace portal
