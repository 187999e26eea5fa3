// Replaying a trace as fast as its dependencies allow (or at its recorded pace), against
// any ReplayTarget: a BlockDevice in-process, or NBD servers (replay_targets.h).
//
// Order and dependencies. Ops are issued in arrival order (start time; see
// TraceOp::StartNs), one after another; an op is issued only when
//   - fewer than `iodepth` ops are in flight;
//   - no earlier write-like op (Write, Trim, WriteZeroes) that overlaps it is still in
//     flight: reads see the writes they followed, overlapping writes keep their order;
//   - no earlier FLUSH is in flight (a FLUSH blocks everything after it), and, for a
//     FLUSH, nothing at all is in flight (it waits for everything before it);
//   - with pace original: its recorded start offset from the first op has elapsed.
// Ops whose type is unknown to the target fail like any other error and are counted.
//
// Latency is measured per op from issue to completion on the Env's clock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "env/env.h"
#include "env/task.h"
#include "trace/histogram.h"
#include "trace/trace_format.h"
#include "util/status.h"

namespace portal::trace {

// The dependency rules above, without I/O or time. Not thread-safe.
class ReplayScheduler {
 public:
  explicit ReplayScheduler(uint32_t iodepth) : iodepth_(iodepth == 0 ? 1 : iodepth) {}
  bool CanStart(const TraceOp& op) const;
  void Started(uint64_t id, const TraceOp& op);
  void Completed(uint64_t id);
  size_t inflight() const { return running_.size(); }

 private:
  struct Running {
    uint64_t id;
    uint64_t offset;
    uint64_t end;
    OpType type;
  };
  const uint32_t iodepth_;
  std::vector<Running> running_;  // at most iodepth_ entries
};

// Indexes of trace.ops in replay (arrival) order: by StartNs, ties by file order.
std::vector<size_t> ReplayOrder(const Trace& trace);

class ReplayTarget {
 public:
  virtual ~ReplayTarget() = default;
  // Runs one op. Called concurrently for up to iodepth ops.
  virtual Task<Status> Execute(const TraceOp& op) = 0;
};

struct ReplayOptions {
  uint32_t iodepth = 32;
  bool original_pace = false;
  // Called now and then (at most every progress_interval_ns) with ops done and total.
  std::function<void(uint64_t done, uint64_t total)> progress;
  uint64_t progress_interval_ns = 1'000'000'000;
};

struct ReplayResult {
  uint64_t duration_ns = 0;  // first issue to last completion
  uint64_t ops = 0;
  std::array<uint64_t, kNumOpTypes> ops_by_type{};
  std::array<uint64_t, kNumOpTypes> failures_by_type{};
  std::array<LatencyHistogram, kNumOpTypes> latency;
  uint64_t failures = 0;
  uint64_t recorded_failures = 0;  // ops that had failed when recorded
  uint64_t bytes_read = 0;         // Read lengths
  uint64_t bytes_written = 0;      // Write payloads
  uint64_t bytes_zeroed = 0;       // WriteZeroes and Trim lengths
  Status first_error;              // of the first failed op, for the report
};

// Replays every op of `trace`; `env` runs the coroutines (RealEnv for real targets).
// `trace` and `target` must outlive the returned task.
Task<ReplayResult> Replay(Env& env, const Trace& trace, ReplayTarget& target,
                          ReplayOptions options);

// Deterministic, incompressible bytes for replayed writes: Get returns `length` bytes
// (<= kMaxPatternLength) chosen by `offset`. Immutable after construction (thread-safe);
// costs kMaxPatternLength + 64 KiB of memory.
inline constexpr size_t kMaxPatternLength = 32u << 20;
class WritePattern {
 public:
  WritePattern();
  std::span<const uint8_t> Get(uint64_t offset, size_t length) const;

 private:
  static constexpr size_t kWindow = 64 * 1024;
  std::vector<uint8_t> data_;
};

}  // namespace portal::trace
