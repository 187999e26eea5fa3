#include <catch2/catch.hpp>

#include "trace/bench_report.h"

namespace portal::trace {
namespace {

IterationReport Iteration(uint64_t duration_ns, uint64_t scale) {
  IterationReport it;
  ReplayResult& r = it.result;
  r.duration_ns = duration_ns;
  for (uint64_t i = 1; i <= 1000; ++i) {
    r.latency[static_cast<size_t>(OpType::kWrite)].Record(i * 1000 * scale);
    ++r.ops_by_type[static_cast<size_t>(OpType::kWrite)];
    ++r.ops;
  }
  r.latency[static_cast<size_t>(OpType::kFlush)].Record(5'000'000);
  ++r.ops_by_type[static_cast<size_t>(OpType::kFlush)];
  ++r.ops;
  r.bytes_written = 1000 * 4096;
  objstore::StoreStats s;
  s[objstore::OpKind::kPutIfAbsent] = {10, 0, 2 * 1000 * 4096};
  s[objstore::OpKind::kGet] = {3, 1, 100};
  it.store = s;
  return it;
}

TEST_CASE("bench report merges iterations and orders percentiles", "[trace]") {
  WorkloadReport w;
  w.name = "unit";
  w.trace_ops = 1001;
  w.iterations = {Iteration(1'000'000'000, 1), Iteration(3'000'000'000, 2)};
  ReplayResult m = w.Merged();
  CHECK(m.ops == 2002);
  CHECK(m.latency[static_cast<size_t>(OpType::kWrite)].count() == 2000);
  CHECK(w.MeanDurationNs() == Approx(2e9));
  CHECK(w.OpsPerSec() == Approx(2002 / 4.0));
  CHECK(w.WriteMBps() == Approx(2 * 4.096 / 4.0));
  REQUIRE(w.WriteAmplification());
  CHECK(*w.WriteAmplification() == Approx(2.0));

  auto j = WorkloadJson(w);
  CHECK(j["write_amplification"].get<double>() == Approx(2.0));
  CHECK(j["object_store"]["PUT_IF_ABSENT"]["calls"] == 20);
  CHECK(j["object_store"]["GET"]["errors"] == 2);
  CHECK(j["iterations"].size() == 2);
  const auto& lat = j["latency_ns"]["Write"];
  uint64_t prev = 0;
  for (const char* k : {"p50", "p90", "p99", "p99_9", "max"}) {
    uint64_t v = lat[k].get<uint64_t>();
    CHECK(v >= prev);
    prev = v;
  }
  CHECK(lat["max"] == 2'000'000);
  CHECK(!j["latency_ns"].contains("Read"));  // types that did not occur are left out

  std::string text = FormatWorkload(w);
  CHECK_THAT(text, Catch::Contains("p99.9"));
  CHECK_THAT(text, Catch::Contains("write amplification 2.00"));
  CHECK_THAT(text, Catch::Contains("PUT_IF_ABSENT 20"));
  CHECK_THAT(FormatTable({w}), Catch::Contains("unit"));
}

TEST_CASE("bench report gives store requests per NBD op, summing to the store's totals",
          "[trace]") {
  WorkloadReport w;
  w.name = "perop";
  w.iterations = {Iteration(1'000'000'000, 1), Iteration(2'000'000'000, 1)};
  objstore::StoreStats total = *w.MergedStore();
  REQUIRE(total.Total().calls == 26);  // 20 PUT_IF_ABSENT + 6 GET over 2002 ops
  auto per_op = w.RequestsPerOp();
  REQUIRE(per_op);
  CHECK(per_op->ops == 2002);
  CHECK(per_op->per_kind[static_cast<size_t>(objstore::OpKind::kGet)] == Approx(6.0 / 2002));
  CHECK(per_op->total == Approx(26.0 / 2002));

  auto j = WorkloadJson(w);
  const auto& rpo = j["requests_per_op"];
  CHECK(j["store_requests"] == 26);
  double sum = 0;
  for (const auto& [kind, v] : rpo.items()) {
    if (kind == "total") continue;
    CHECK(v.get<double>() * 2002 == Approx(j["object_store"][kind]["calls"].get<double>()));
    sum += v.get<double>();
  }
  CHECK(sum == Approx(rpo["total"].get<double>()));
  CHECK(rpo["total"].get<double>() * 2002 == Approx(26));
  CHECK(!rpo.contains("HEAD"));  // kinds with no calls are left out

  std::string text = FormatWorkload(w);
  CHECK_THAT(text, Catch::Contains("store requests per op: GET 0.0030 PUT_IF_ABSENT 0.0100 "
                                   "all 0.0130 (26 requests / 2002 ops)"));
  // The comparison tables: per-op-kind p50/p99 and requests per op.
  std::string lat = FormatLatencyTable({w});
  CHECK_THAT(lat, Catch::Contains("Write p50"));
  CHECK_THAT(lat, Catch::Contains("Flush p99"));
  CHECK_THAT(lat, !Catch::Contains("Read p50"));  // no Read op in any workload
  std::string req = FormatRequestsTable({w});
  CHECK_THAT(req, Catch::Contains("PUT_IF_ABSENT"));
  CHECK_THAT(req, Catch::Contains("0.0130"));
}

TEST_CASE("bench report latency table: ms per op kind, '-' where a workload lacks it",
          "[trace]") {
  WorkloadReport a;
  a.name = "a";
  a.iterations = {Iteration(1'000'000'000, 1)};
  WorkloadReport b;
  b.name = "b";
  IterationReport it;
  it.result.latency[static_cast<size_t>(OpType::kRead)].Record(25'000'000);
  it.result.ops = 1;
  b.iterations.push_back(it);
  std::string t = FormatLatencyTable({a, b});
  CHECK_THAT(t, Catch::Contains("Read p50"));
  CHECK_THAT(t, Catch::Contains("25.00"));  // b's read, in ms
  // a has no Read, b has no Write: both show '-' there.
  auto lines = t.substr(t.find('\n') + 1);
  CHECK_THAT(lines, Catch::Contains("-"));
  CHECK(!b.RequestsPerOp());  // no store numbers (an --nbd run)
  CHECK_THAT(FormatRequestsTable({b}), Catch::Contains("b"));
}

TEST_CASE("bench report without store numbers or writes", "[trace]") {
  WorkloadReport w;
  IterationReport it;
  it.result.duration_ns = 0;
  w.iterations.push_back(it);
  CHECK(!w.WriteAmplification());
  CHECK(w.OpsPerSec() == 0);
  auto j = WorkloadJson(w);
  CHECK(!j.contains("write_amplification"));
  CHECK(!j.contains("requests_per_op"));
  CHECK(j["latency_ns"].empty());
}

}  // namespace
}  // namespace portal::trace
