// A cheap pre-scan of configuration text before toml++ sees it. toml++ recurses once per
// dotted key part and per nested inline table or array, so a 100 KB key of 50,000 parts
// overflows the stack (SIGSEGV) instead of failing; the scan refuses such text first.
//
// The scan is conservative and linear: it tracks strings (basic, literal, multi-line),
// comments, and whether it is in a key (line start, table header, after '{' or ',' in an
// inline table) or a value. It counts '.' separators per key outside quotes, and every
// unclosed '[' or '{' outside strings and comments. It does not validate TOML: text it
// passes may still be malformed, which toml++ then reports with its own line and column.
#pragma once

#include <cstddef>
#include <string_view>

#include "util/status.h"

namespace portal::config {

// The largest configuration file (portalbd's own files are under 2 KB).
constexpr size_t kMaxConfigBytes = 1 << 20;
// Parts of one dotted key ("lsm.gc_interval_ms" has 2) or table header ("[a.b.c]" has 3).
constexpr size_t kMaxKeyParts = 16;
// Unclosed '[' and '{' at any point (a table header's brackets count: "[[x]]" is 2).
constexpr size_t kMaxNesting = 16;

// Ok, or InvalidArgument naming `source`, the line and the bound exceeded.
Status CheckTomlShape(std::string_view text, std::string_view source);

}  // namespace portal::config
