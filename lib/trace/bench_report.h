// trace-bench's numbers: per workload, per iteration and merged over the measured
// iterations; printed as text and written as JSON (the layout is in docs/trace.md).
//
// Units: durations in ns in JSON, ms/us in text; MB = 10^6 bytes. Write amplification =
// bytes the object store was asked to PUT (PUT + PUT_IF_ABSENT) / WRITE payload bytes of
// the trace (WRITE_ZEROES and TRIM store no data and are left out of the denominator).
// Store requests per op = object-store calls (of a kind, or all; failed calls included) /
// NBD ops replayed, over the measured iterations. They are not split by NBD op kind:
// writes reach the store as segments uploaded in the background for many ops at once, so
// no request belongs to one op.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "objstore/counting_store.h"
#include "trace/replay.h"

namespace portal::trace {

struct IterationReport {
  ReplayResult result;
  std::optional<objstore::StoreStats> store;  // in-process runs only
};

struct StoreRequestsPerOp {
  uint64_t ops = 0;       // NBD ops replayed
  uint64_t requests = 0;  // object-store calls, all kinds
  std::array<double, objstore::kNumOpKinds> per_kind{};  // calls of the kind / ops
  double total = 0;                                      // requests / ops
};

struct WorkloadReport {
  std::string name;
  std::string trace_path;
  uint64_t trace_ops = 0;
  uint64_t device_size_bytes = 0;
  std::vector<IterationReport> iterations;  // measured ones only

  // Merged over iterations: histograms merged, counters summed, durations summed.
  ReplayResult Merged() const;
  std::optional<objstore::StoreStats> MergedStore() const;
  // Mean over iterations.
  double MeanDurationNs() const;
  double OpsPerSec() const;
  double ReadMBps() const;
  double WriteMBps() const;
  // nullopt without store numbers or without written bytes.
  std::optional<double> WriteAmplification() const;
  // nullopt without store numbers; 0 per op when no op was replayed.
  std::optional<StoreRequestsPerOp> RequestsPerOp() const;
};

// "Read", "p50", ...: the percentiles reported, in order.
struct Percentile {
  const char* name;  // "p50", "p90", "p99", "p99.9"
  const char* key;   // JSON key: "p50", "p90", "p99", "p99_9"
  double q;
};
inline constexpr Percentile kPercentiles[] = {
    {"p50", "p50", 0.50}, {"p90", "p90", 0.90}, {"p99", "p99", 0.99}, {"p99.9", "p99_9", 0.999}};

// One iteration's line: "iteration 2: 812.3 ms  4923 ops/s  read 12.1 MB/s  write ...".
std::string FormatIteration(size_t number, const IterationReport& it);
// The summary of a workload: totals, a latency table per op type, object store use.
std::string FormatWorkload(const WorkloadReport& w);
// The closing tables comparing workloads: totals; p50 and p99 in ms of every op kind that
// occurs in any of them ('-' where a workload has none); store requests per op by kind
// ('-' for a workload without store numbers).
std::string FormatTable(const std::vector<WorkloadReport>& workloads);
std::string FormatLatencyTable(const std::vector<WorkloadReport>& workloads);
std::string FormatRequestsTable(const std::vector<WorkloadReport>& workloads);

nlohmann::json WorkloadJson(const WorkloadReport& w);

}  // namespace portal::trace
