// Logging through spdlog, formatted like the original portalbd (Rust tracing):
//
//   2026-01-07T02:58:02.656272Z  INFO portalbd: NBD server listening address=127.0.0.1:10809
//
// UTC timestamp with microseconds, level right-aligned to 5 columns, the target (a module
// path such as "portalbd::nbd"), then the message with key=value fields appended by the
// caller. Loggers are cheap to fetch; all share one stderr sink. Thread-safe.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace portal::log {

// Configures the shared sink and the level ("trace", "debug", "info", "warn", "error",
// "off"). Safe to call more than once; unknown names fall back to "info".
void Init(std::string_view level = "info");

// The logger for `target`, created on first use.
std::shared_ptr<spdlog::logger> Get(std::string_view target);

}  // namespace portal::log
