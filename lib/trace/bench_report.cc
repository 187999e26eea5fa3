#include "trace/bench_report.h"

#include <algorithm>

#include <fmt/format.h>

namespace portal::trace {
namespace {

double Rate(double amount, double ns) { return ns > 0 ? amount / (ns / 1e9) : 0.0; }
double Us(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

uint64_t PutBytes(const objstore::StoreStats& s) {
  return s[objstore::OpKind::kPut].bytes + s[objstore::OpKind::kPutIfAbsent].bytes;
}

}  // namespace

ReplayResult WorkloadReport::Merged() const {
  ReplayResult m;
  for (const auto& it : iterations) {
    const ReplayResult& r = it.result;
    m.duration_ns += r.duration_ns;
    m.ops += r.ops;
    m.failures += r.failures;
    m.recorded_failures += r.recorded_failures;
    m.bytes_read += r.bytes_read;
    m.bytes_written += r.bytes_written;
    m.bytes_zeroed += r.bytes_zeroed;
    for (size_t t = 0; t < kNumOpTypes; ++t) {
      m.ops_by_type[t] += r.ops_by_type[t];
      m.failures_by_type[t] += r.failures_by_type[t];
      m.latency[t].Merge(r.latency[t]);
    }
    if (m.first_error.ok()) m.first_error = r.first_error;
  }
  return m;
}

std::optional<objstore::StoreStats> WorkloadReport::MergedStore() const {
  std::optional<objstore::StoreStats> m;
  for (const auto& it : iterations) {
    if (!it.store) continue;
    if (!m) m.emplace();
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      m->ops[k].calls += it.store->ops[k].calls;
      m->ops[k].errors += it.store->ops[k].errors;
      m->ops[k].bytes += it.store->ops[k].bytes;
    }
  }
  return m;
}

double WorkloadReport::MeanDurationNs() const {
  if (iterations.empty()) return 0;
  return static_cast<double>(Merged().duration_ns) / static_cast<double>(iterations.size());
}

// Rates over the summed durations: the same as the mean rate weighted by duration.
double WorkloadReport::OpsPerSec() const {
  ReplayResult m = Merged();
  return Rate(static_cast<double>(m.ops), static_cast<double>(m.duration_ns));
}
double WorkloadReport::ReadMBps() const {
  ReplayResult m = Merged();
  return Rate(static_cast<double>(m.bytes_read) / 1e6, static_cast<double>(m.duration_ns));
}
double WorkloadReport::WriteMBps() const {
  ReplayResult m = Merged();
  return Rate(static_cast<double>(m.bytes_written) / 1e6, static_cast<double>(m.duration_ns));
}

std::optional<double> WorkloadReport::WriteAmplification() const {
  auto store = MergedStore();
  ReplayResult m = Merged();
  if (!store || m.bytes_written == 0) return std::nullopt;
  return static_cast<double>(PutBytes(*store)) / static_cast<double>(m.bytes_written);
}

std::optional<StoreRequestsPerOp> WorkloadReport::RequestsPerOp() const {
  auto store = MergedStore();
  if (!store) return std::nullopt;
  StoreRequestsPerOp r;
  r.ops = Merged().ops;
  r.requests = store->Total().calls;
  double ops = static_cast<double>(r.ops);
  for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
    r.per_kind[k] = r.ops ? static_cast<double>(store->ops[k].calls) / ops : 0.0;
  }
  r.total = r.ops ? static_cast<double>(r.requests) / ops : 0.0;
  return r;
}

std::string FormatIteration(size_t number, const IterationReport& it) {
  const ReplayResult& r = it.result;
  double ns = static_cast<double>(r.duration_ns);
  return fmt::format(
      "  iteration {}: {:.1f} ms  {:.0f} ops/s  read {:.1f} MB/s  write {:.1f} MB/s  "
      "failures {}\n",
      number, ns / 1e6, Rate(static_cast<double>(r.ops), ns),
      Rate(static_cast<double>(r.bytes_read) / 1e6, ns),
      Rate(static_cast<double>(r.bytes_written) / 1e6, ns), r.failures);
}

std::string FormatWorkload(const WorkloadReport& w) {
  ReplayResult m = w.Merged();
  std::string out;
  auto add = [&out](const std::string& s) { out.append(s); };
  add(fmt::format("  summary over {} iteration{}: {:.1f} ms  {:.0f} ops/s  read {:.1f} MB/s  "
                  "write {:.1f} MB/s\n",
                  w.iterations.size(), w.iterations.size() == 1 ? "" : "s",
                  w.MeanDurationNs() / 1e6, w.OpsPerSec(), w.ReadMBps(), w.WriteMBps()));
  add(fmt::format("  failures {} (recorded as failed in the trace: {}){}\n", m.failures,
                  m.recorded_failures,
                  m.first_error.ok() ? "" : "  first: " + m.first_error.ToString()));
  add(fmt::format("  {:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "latency (us)",
                  "count", "mean", "p50", "p90", "p99", "p99.9", "max"));
  for (size_t t = 0; t < kNumOpTypes; ++t) {
    const LatencyHistogram& h = m.latency[t];
    if (h.count() == 0) continue;
    add(fmt::format("  {:<12} {:>9} {:>10.1f}", OpTypeName(static_cast<OpType>(t)), h.count(),
                    h.mean() / 1000.0));
    for (const auto& p : kPercentiles) add(fmt::format(" {:>10.1f}", Us(h.Percentile(p.q))));
    add(fmt::format(" {:>10.1f}\n", Us(h.max())));
  }
  if (auto store = w.MergedStore()) {
    add("  object store (all iterations):");
    bool any = false;
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      const auto& op = store->ops[k];
      if (op.calls == 0) continue;
      any = true;
      add(fmt::format(" {} {} ({:.1f} MB{})", objstore::OpKindName(static_cast<objstore::OpKind>(k)),
                      op.calls, static_cast<double>(op.bytes) / 1e6,
                      op.errors ? fmt::format(", {} errors", op.errors) : ""));
    }
    if (!any) add(" no requests");
    add("\n");
    auto per_op = *w.RequestsPerOp();
    add("  store requests per op:");
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      if (store->ops[k].calls == 0) continue;
      add(fmt::format(" {} {:.4f}", objstore::OpKindName(static_cast<objstore::OpKind>(k)),
                      per_op.per_kind[k]));
    }
    add(fmt::format(" all {:.4f} ({} requests / {} ops)\n", per_op.total, per_op.requests,
                    per_op.ops));
    if (auto wa = w.WriteAmplification()) {
      add(fmt::format("  write amplification {:.2f} (PUT {:.1f} MB / written {:.1f} MB)\n", *wa,
                      static_cast<double>(PutBytes(*store)) / 1e6,
                      static_cast<double>(m.bytes_written) / 1e6));
    } else {
      add("  write amplification n/a (the trace writes no data)\n");
    }
  }
  return out;
}

std::string FormatTable(const std::vector<WorkloadReport>& ws) {
  std::string out = fmt::format("{:<24} {:>9} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
                                "workload", "ops", "time (ms)", "ops/s", "rd MB/s", "wr MB/s",
                                "p50 us", "p99 us", "WA");
  for (const auto& w : ws) {
    ReplayResult m = w.Merged();
    LatencyHistogram all;
    for (const auto& h : m.latency) all.Merge(h);
    auto wa = w.WriteAmplification();
    out += fmt::format("{:<24} {:>9} {:>11.1f} {:>10.0f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>6}\n",
                       w.name.substr(0, 24), w.trace_ops, w.MeanDurationNs() / 1e6, w.OpsPerSec(),
                       w.ReadMBps(), w.WriteMBps(), Us(all.Percentile(0.5)),
                       Us(all.Percentile(0.99)), wa ? fmt::format("{:.2f}", *wa) : "-");
  }
  return out;
}

std::string FormatLatencyTable(const std::vector<WorkloadReport>& ws) {
  std::vector<ReplayResult> merged;
  std::array<bool, kNumOpTypes> present{};
  for (const auto& w : ws) {
    merged.push_back(w.Merged());
    for (size_t t = 0; t < kNumOpTypes; ++t) present[t] |= merged.back().latency[t].count() > 0;
  }
  std::string out = fmt::format("{:<24}", "latency (ms)");
  std::vector<size_t> widths;
  for (size_t t = 0; t < kNumOpTypes; ++t) {
    if (!present[t]) continue;
    for (const char* p : {"p50", "p99"}) {
      std::string h = fmt::format("{} {}", OpTypeName(static_cast<OpType>(t)), p);
      widths.push_back(std::max<size_t>(h.size(), 9));
      out += fmt::format(" {:>{}}", h, widths.back());
    }
  }
  out += "\n";
  for (size_t i = 0; i < ws.size(); ++i) {
    out += fmt::format("{:<24}", ws[i].name.substr(0, 24));
    size_t col = 0;
    for (size_t t = 0; t < kNumOpTypes; ++t) {
      if (!present[t]) continue;
      const LatencyHistogram& h = merged[i].latency[t];
      for (double q : {0.5, 0.99}) {
        std::string v = h.count() ? fmt::format("{:.3f}", static_cast<double>(h.Percentile(q)) / 1e6)
                                  : "-";
        out += fmt::format(" {:>{}}", v, widths[col++]);
      }
    }
    out += "\n";
  }
  return out;
}

std::string FormatRequestsTable(const std::vector<WorkloadReport>& ws) {
  std::array<bool, objstore::kNumOpKinds> present{};
  for (const auto& w : ws) {
    if (auto store = w.MergedStore()) {
      for (size_t k = 0; k < objstore::kNumOpKinds; ++k) present[k] |= store->ops[k].calls > 0;
    }
  }
  std::string out = fmt::format("{:<24} {:>9} {:>9} {:>9}", "store requests per op", "ops",
                                "requests", "all");
  for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
    if (present[k]) out += fmt::format(" {:>13}", objstore::OpKindName(static_cast<objstore::OpKind>(k)));
  }
  out += "\n";
  for (const auto& w : ws) {
    auto r = w.RequestsPerOp();
    out += fmt::format("{:<24} {:>9} {:>9} {:>9}", w.name.substr(0, 24), w.Merged().ops,
                       r ? std::to_string(r->requests) : "-",
                       r ? fmt::format("{:.4f}", r->total) : "-");
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      if (present[k]) out += fmt::format(" {:>13}", r ? fmt::format("{:.4f}", r->per_kind[k]) : "-");
    }
    out += "\n";
  }
  return out;
}

nlohmann::json WorkloadJson(const WorkloadReport& w) {
  using nlohmann::json;
  ReplayResult m = w.Merged();
  json j;
  j["name"] = w.name;
  j["trace"] = w.trace_path;
  j["trace_ops"] = w.trace_ops;
  j["device_size_bytes"] = w.device_size_bytes;
  json iters = json::array();
  for (const auto& it : w.iterations) {
    const ReplayResult& r = it.result;
    double ns = static_cast<double>(r.duration_ns);
    iters.push_back({{"duration_ns", r.duration_ns},
                     {"ops", r.ops},
                     {"ops_per_sec", Rate(static_cast<double>(r.ops), ns)},
                     {"read_mb_per_sec", Rate(static_cast<double>(r.bytes_read) / 1e6, ns)},
                     {"write_mb_per_sec", Rate(static_cast<double>(r.bytes_written) / 1e6, ns)},
                     {"failures", r.failures}});
  }
  j["iterations"] = iters;
  j["duration_ns"] = w.MeanDurationNs();
  j["ops_per_sec"] = w.OpsPerSec();
  j["read_mb_per_sec"] = w.ReadMBps();
  j["write_mb_per_sec"] = w.WriteMBps();
  j["ops"] = m.ops;
  j["failures"] = m.failures;
  j["recorded_failures"] = m.recorded_failures;
  j["bytes_read"] = m.bytes_read;
  j["bytes_written"] = m.bytes_written;
  j["bytes_zeroed"] = m.bytes_zeroed;
  if (!m.first_error.ok()) j["first_error"] = m.first_error.ToString();
  json lat = json::object();
  for (size_t t = 0; t < kNumOpTypes; ++t) {
    const LatencyHistogram& h = m.latency[t];
    if (h.count() == 0) continue;
    json e = {{"count", h.count()}, {"failures", m.failures_by_type[t]}, {"mean", h.mean()},
              {"min", h.min()}, {"max", h.max()}};
    for (const auto& p : kPercentiles) e[p.key] = h.Percentile(p.q);
    lat[std::string(OpTypeName(static_cast<OpType>(t)))] = e;
  }
  j["latency_ns"] = lat;
  if (auto store = w.MergedStore()) {
    json s = json::object();
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      const auto& op = store->ops[k];
      if (op.calls == 0) continue;
      s[std::string(objstore::OpKindName(static_cast<objstore::OpKind>(k)))] = {
          {"calls", op.calls}, {"errors", op.errors}, {"bytes", op.bytes}};
    }
    j["object_store"] = s;
    auto per_op = *w.RequestsPerOp();
    json r = {{"total", per_op.total}};
    for (size_t k = 0; k < objstore::kNumOpKinds; ++k) {
      if (store->ops[k].calls == 0) continue;
      r[std::string(objstore::OpKindName(static_cast<objstore::OpKind>(k)))] = per_op.per_kind[k];
    }
    j["store_requests"] = per_op.requests;
    j["requests_per_op"] = r;
    auto wa = w.WriteAmplification();
    j["write_amplification"] = wa ? json(*wa) : json(nullptr);
  }
  return j;
}

}  // namespace portal::trace
