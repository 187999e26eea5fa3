// RFC 3339 timestamps, as stored objects and the control protocol show times.
#pragma once

#include <cstdint>
#include <string>

namespace portal {

// UTC with microseconds ("2026-01-07T02:58:02.656272Z"); nanoseconds are truncated.
std::string FormatRfc3339(int64_t ns_since_epoch);

}  // namespace portal
