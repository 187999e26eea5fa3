// Logging through spdlog, formatted like the original portalbd (Rust tracing):
//
//   2026-01-07T02:58:02.656272Z  INFO portalbd: NBD server listening address=127.0.0.1:10809
//
// UTC timestamp with microseconds, level right-aligned to 5 columns, the target (a module
// path such as "portalbd::nbd"), then the message with key=value fields appended by the
// caller. Loggers are cheap to fetch; all share one stderr sink. Thread-safe.
//
// Format::kJson writes the same fields as one JSON object per line, for log shippers:
//
//   {"timestamp":"2026-01-07T02:58:02.656272Z","level":"INFO","target":"portalbd",
//    "message":"NBD server listening address=127.0.0.1:10809"}
//
// (one line). The message, key=value fields included, is one JSON string, escaped; bytes
// that are not UTF-8 (a peer's export name) become U+FFFD.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace portal::log {

enum class Format { kText, kJson };

// "text" or "json"; nullopt for anything else.
std::optional<Format> ParseFormat(std::string_view name);

// Configures the shared sink: the level ("trace", "debug", "info", "warn", "error",
// "off") and the line format. Safe to call more than once (the last call wins); unknown
// level names fall back to "info".
void Init(std::string_view level = "info", Format format = Format::kText);

// The formatter Init installs for `format` (for tests: it formats one log_msg).
std::unique_ptr<spdlog::formatter> MakeFormatter(Format format);

// The logger for `target`, created on first use.
std::shared_ptr<spdlog::logger> Get(std::string_view target);

}  // namespace portal::log
