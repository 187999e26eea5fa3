// Reading and validating traces (format: trace_format.h, docs/trace.md).
//
// Accepts the original portalbd's traces and ours. Every malformed trace is rejected
// with InvalidArgument naming the field at fault, e.g.
//   "mkfs.json: ops[12].op.length: expected an unsigned integer, got string"
//   "mkfs.json: ops[3].op.type: unknown op type \"Discard\""
//   "mkfs.json: JSON syntax error at line 4, column 17: ..."
// Checked: the five top-level fields (types, RFC 3339 start_time); per op: seq,
// timestamp_ns, duration_ns, success, op.type, offset and length where the type has
// them (Read/Write lengths fit 32 bits), a successful op inside device_size_bytes, and
// our optional conn, start_ns (<= timestamp_ns) and flags. Unknown keys are ignored, as
// the original's reader (serde) ignores them.
//
// The whole file is parsed in memory (nlohmann_json DOM); a trace of a million ops
// takes a few hundred MB while loading, then ~64 bytes per op.
#pragma once

#include <string>
#include <string_view>

#include "trace/trace_format.h"
#include "util/status.h"

namespace portal::trace {

// `source` names the trace in error messages (a path, or "<input>").
Result<Trace> ParseTrace(std::string_view json_text, std::string_view source = "<input>");
Result<Trace> LoadTrace(const std::string& path);

}  // namespace portal::trace
