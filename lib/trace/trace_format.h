// Trace format: what trace-record writes and trace-bench reads. It is the JSON of the
// original portalbd's recorder (portalbd/src/record/types.rs), so traces interchange in
// both directions; our additions are optional keys that the original's reader ignores.
// The full description, with the original's timing semantics, is docs/trace.md.
//
//   {"workload": "mkfs-ext4",                 string
//    "start_time": "2026-01-07T02:58:02.656272123Z",   RFC 3339, when recording began
//    "ops": [                                 in completion order (the original's order)
//      {"seq": 0,                             u64, numbers ops in file order
//       "timestamp_ns": 181000,               u64, completion, ns since start_time
//       "op": {"type": "Write", "offset": 0, "length": 4096},
//                                             Read | Write | Trim | WriteZeroes | Flush,
//                                             and ours: BlockStatus | Cache. Flush has
//                                             neither offset nor length.
//       "duration_ns": 52000,                 u64, completion - start
//       "success": true,                      false: the server answered with an error
//       "conn": 1,                            ours, optional: connection number (from 1)
//       "start_ns": 129000,                   ours, optional: request arrival, ns
//       "flags": ["FUA"]},                    ours, optional: FUA NO_HOLE DF REQ_ONE
//      ...],                                  FAST_ZERO; omitted when none
//    "device_size_bytes": 1073741824,         u64, export size the server announced
//    "duration_ns": 5000000000}               u64, recording length
//
// Key order is free (JSON objects are unordered); the writer puts device_size_bytes and
// duration_ns after "ops" because it streams ops to disk before it knows them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::trace {

// Stored by name, never by number.
enum class OpType : uint8_t { kRead, kWrite, kTrim, kWriteZeroes, kFlush, kBlockStatus, kCache };
inline constexpr size_t kNumOpTypes = 7;

// "Read", "Write", "Trim", "WriteZeroes", "Flush", "BlockStatus", "Cache".
std::string_view OpTypeName(OpType type);
std::optional<OpType> OpTypeFromName(std::string_view name);
// The five types the original portalbd knows.
bool IsOriginalType(OpType type);
// Changes data: Write, Trim, WriteZeroes (replay orders overlapping requests after them).
bool IsWriteLike(OpType type);
// Carries an offset and a length (all but Flush).
inline bool HasRange(OpType type) { return type != OpType::kFlush; }

// Request flags recorded with an op (a trace-level copy of the NBD command flags).
enum OpFlag : uint16_t {
  kFlagFua = 1 << 0,
  kFlagNoHole = 1 << 1,
  kFlagDf = 1 << 2,
  kFlagReqOne = 1 << 3,
  kFlagFastZero = 1 << 4,
};
inline constexpr size_t kNumOpFlags = 5;
// "FUA", "NO_HOLE", "DF", "REQ_ONE", "FAST_ZERO"; bit is one OpFlag.
std::string_view OpFlagName(uint16_t bit);
std::optional<uint16_t> OpFlagFromName(std::string_view name);
// From NBD_CMD_FLAG_* bits (unknown bits are dropped).
uint16_t OpFlagsFromNbd(uint16_t nbd_flags);

struct TraceOp {
  uint64_t seq = 0;
  uint64_t timestamp_ns = 0;  // completion
  uint64_t duration_ns = 0;
  uint64_t offset = 0;        // 0 for Flush
  uint64_t length = 0;        // 0 for Flush
  std::optional<uint64_t> start_ns;  // ours; absent in the original's traces
  uint32_t conn = 0;          // 0: not recorded
  OpType type = OpType::kRead;
  uint16_t flags = 0;         // OpFlag bits
  bool success = true;

  // When the request arrived: start_ns, else timestamp_ns - duration_ns (the original
  // stamps ops at completion).
  uint64_t StartNs() const {
    if (start_ns) return *start_ns;
    return timestamp_ns >= duration_ns ? timestamp_ns - duration_ns : 0;
  }
  uint64_t end() const { return offset + length; }
};

struct Trace {
  std::string workload;
  uint64_t device_size_bytes = 0;
  std::string start_time;
  uint64_t duration_ns = 0;
  std::vector<TraceOp> ops;  // as in the file
};

// "2026-01-07T02:58:02.656272123Z" for nanoseconds since the Unix epoch.
std::string Rfc3339(int64_t unix_ns);
// Loose RFC 3339 check: date, 'T' or ' ', time, optional fraction, 'Z' or +hh:mm.
bool LooksLikeRfc3339(std::string_view s);

// Streams a trace to a file: the header at Open, one line per op, the trailer at
// Finish. Memory use does not grow with the number of ops. Not thread-safe (the
// Recorder serializes callers). Errors are sticky: after one, later calls fail too.
class TraceWriter {
 public:
  struct Options {
    std::string workload = "unnamed";
    std::string start_time;  // RFC 3339
    // Write only the original's five op types; BlockStatus and Cache are dropped.
    bool compat = false;
  };

  TraceWriter() = default;
  ~TraceWriter();  // closes without a trailer if Finish was not called
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Creates (truncates) `path` and writes the header.
  Status Open(const std::string& path, Options options);
  // Writes `op` with the next sequence number (op.seq is ignored). Returns false (and
  // writes nothing) for an op that compat mode drops.
  Result<bool> Append(const TraceOp& op);
  // Writes the trailer, flushes and closes. The file is complete JSON afterwards.
  Status Finish(uint64_t device_size_bytes, uint64_t duration_ns);

  uint64_t ops_written() const { return next_seq_; }
  uint64_t ops_dropped() const { return dropped_; }

 private:
  Status Check(bool ok, std::string_view what);

  std::FILE* file_ = nullptr;
  std::string path_;
  Options options_;
  uint64_t next_seq_ = 0;
  uint64_t dropped_ = 0;
  std::string line_;
  Status error_;
};

// One op as the writer formats it (no trailing comma or newline); exposed for tests.
void AppendOpJson(const TraceOp& op, std::string* out);
// A JSON string literal with escapes.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace portal::trace
