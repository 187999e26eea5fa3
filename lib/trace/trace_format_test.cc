#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "testing/testing.h"
#include "trace/trace_format.h"
#include "trace/trace_reader.h"

namespace portal::trace {
namespace {

TraceOp Op(OpType type, uint64_t offset, uint64_t length, uint64_t start, uint64_t end) {
  TraceOp op;
  op.type = type;
  if (HasRange(type)) {
    op.offset = offset;
    op.length = length;
  }
  op.start_ns = start;
  op.timestamp_ns = end;
  op.duration_ns = end - start;
  op.conn = 1;
  return op;
}

// A trace in the original portalbd's own output: serde_json::to_writer_pretty of OpTrace
// (types.rs), with start_time from chrono's to_rfc3339.
constexpr const char* kOriginal = R"({
  "workload": "mkfs.ext4",
  "device_size_bytes": 1073741824,
  "start_time": "2026-01-07T02:58:02.656272123+00:00",
  "duration_ns": 918273645,
  "ops": [
    {
      "seq": 0,
      "timestamp_ns": 1200,
      "op": {
        "type": "Read",
        "offset": 0,
        "length": 4096
      },
      "duration_ns": 800,
      "success": true
    },
    {
      "seq": 1,
      "timestamp_ns": 5200,
      "op": {
        "type": "Flush"
      },
      "duration_ns": 300,
      "success": true
    },
    {
      "seq": 2,
      "timestamp_ns": 9000,
      "op": {
        "type": "Trim",
        "offset": 4096,
        "length": 1073737728
      },
      "duration_ns": 100,
      "success": false
    }
  ]
})";

TEST_CASE("trace reader accepts the original portalbd's traces", "[trace]") {
  auto t = ParseTrace(kOriginal);
  REQUIRE(t.ok());
  CHECK(t->workload == "mkfs.ext4");
  CHECK(t->device_size_bytes == 1ull << 30);
  CHECK(t->duration_ns == 918273645);
  REQUIRE(t->ops.size() == 3);
  CHECK(t->ops[0].type == OpType::kRead);
  CHECK(t->ops[0].length == 4096);
  CHECK(!t->ops[0].start_ns);
  CHECK(t->ops[0].StartNs() == 400);  // the original stamps ops when they complete
  CHECK(t->ops[1].type == OpType::kFlush);
  CHECK(t->ops[2].type == OpType::kTrim);
  CHECK(!t->ops[2].success);
}

TEST_CASE("trace writer output reads back identically", "[trace]") {
  testing::TempDir dir;
  std::string path = dir.Join("t.json");
  TraceWriter w;
  REQUIRE(w.Open(path, {"fio \"randrw\"\n", "2026-01-07T02:58:02.000000001Z", false}).ok());
  std::vector<TraceOp> ops = {
      Op(OpType::kWrite, 4096, 8192, 10, 50),  Op(OpType::kRead, 0, 512, 20, 60),
      Op(OpType::kFlush, 0, 0, 70, 90),        Op(OpType::kTrim, 1 << 20, 1 << 20, 95, 99),
      Op(OpType::kWriteZeroes, 0, 65536, 100, 120), Op(OpType::kBlockStatus, 0, 1 << 30, 130, 131),
      Op(OpType::kCache, 0, 4096, 140, 141)};
  ops[0].flags = kFlagFua;
  ops[4].flags = kFlagNoHole | kFlagFastZero;
  ops[1].success = false;
  ops[6].conn = 7;
  for (const auto& op : ops) REQUIRE(*w.Append(op));
  REQUIRE(w.Finish(1ull << 30, 12345).ok());

  auto t = LoadTrace(path);
  REQUIRE(t.ok());
  CHECK(t->workload == "fio \"randrw\"\n");
  CHECK(t->device_size_bytes == 1ull << 30);
  CHECK(t->duration_ns == 12345);
  CHECK(t->start_time == "2026-01-07T02:58:02.000000001Z");
  REQUIRE(t->ops.size() == ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    INFO("op " << i);
    const TraceOp& a = t->ops[i];
    const TraceOp& e = ops[i];
    CHECK(a.seq == i);
    CHECK(a.type == e.type);
    CHECK(a.offset == e.offset);
    CHECK(a.length == e.length);
    CHECK(a.timestamp_ns == e.timestamp_ns);
    CHECK(a.duration_ns == e.duration_ns);
    CHECK(a.start_ns == e.start_ns);
    CHECK(a.flags == e.flags);
    CHECK(a.conn == e.conn);
    CHECK(a.success == e.success);
  }
  // The original's shape: Flush carries no offset or length; extras are top-level keys.
  auto doc = nlohmann::json::parse(testing::ReadFile(path));
  CHECK(doc["ops"][2]["op"] == nlohmann::json::parse(R"({"type":"Flush"})"));
  CHECK(doc["ops"][0]["flags"] == nlohmann::json::parse(R"(["FUA"])"));
  CHECK(!doc["ops"][1].contains("flags"));
}

TEST_CASE("trace writer compat mode keeps only the original's five types", "[trace]") {
  testing::TempDir dir;
  std::string path = dir.Join("t.json");
  TraceWriter w;
  REQUIRE(w.Open(path, {"x", Rfc3339(0), true}).ok());
  CHECK(*w.Append(Op(OpType::kRead, 0, 512, 1, 2)));
  CHECK(!*w.Append(Op(OpType::kBlockStatus, 0, 512, 3, 4)));
  CHECK(!*w.Append(Op(OpType::kCache, 0, 512, 5, 6)));
  CHECK(*w.Append(Op(OpType::kFlush, 0, 0, 7, 8)));
  REQUIRE(w.Finish(4096, 9).ok());
  CHECK(w.ops_dropped() == 2);
  auto t = LoadTrace(path);
  REQUIRE(t.ok());
  REQUIRE(t->ops.size() == 2);
  CHECK(t->ops[1].seq == 1);  // numbered without gaps
  CHECK(t->ops[1].type == OpType::kFlush);
}

TEST_CASE("trace writer with no ops writes a valid trace", "[trace]") {
  testing::TempDir dir;
  TraceWriter w;
  REQUIRE(w.Open(dir.Join("t.json"), {"empty", Rfc3339(1'700'000'000'123'456'789), false}).ok());
  REQUIRE(w.Finish(0, 0).ok());
  auto t = LoadTrace(dir.Join("t.json"));
  REQUIRE(t.ok());
  CHECK(t->ops.empty());
  CHECK(t->start_time == "2023-11-14T22:13:20.123456789Z");
}

// Replaces the text `from` in the valid trace below, and expects the reader to name
// `field` in its error.
void ExpectRejected(const std::string& from, const std::string& to, const std::string& field) {
  std::string good =
      R"({"workload":"w","start_time":"2026-01-07T02:58:02Z","ops":[)"
      R"({"seq":0,"timestamp_ns":10,"op":{"type":"Write","offset":0,"length":4096},)"
      R"("duration_ns":5,"success":true,"conn":1,"start_ns":5,"flags":["FUA"]},)"
      R"({"seq":1,"timestamp_ns":20,"op":{"type":"Flush"},"duration_ns":1,"success":true}],)"
      R"("device_size_bytes":1048576,"duration_ns":30})";
  REQUIRE(ParseTrace(good).ok());
  size_t at = good.find(from);
  REQUIRE(at != std::string::npos);
  std::string bad = good.replace(at, from.size(), to);
  auto t = ParseTrace(bad, "bad.json");
  INFO(bad);
  REQUIRE(!t.ok());
  CHECK(t.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(t.status().message(), Catch::Contains("bad.json: " + field));
}

TEST_CASE("trace reader rejects malformed traces naming the field", "[trace]") {
  ExpectRejected(R"("workload":"w")", R"("workload":7)", "workload: expected a string");
  ExpectRejected(R"("workload":"w",)", "", "workload: missing");
  ExpectRejected(R"("device_size_bytes":1048576)", R"("device_size_bytes":-1)",
                 "device_size_bytes: expected an unsigned integer, got negative integer");
  ExpectRejected(R"("duration_ns":30)", R"("duration_ns":"30")", "duration_ns: expected an unsigned");
  ExpectRejected(R"("2026-01-07T02:58:02Z")", R"("yesterday")", "start_time: \"yesterday\" is not");
  ExpectRejected(R"("ops":[)", R"("ops":{"a":[)", "");  // not JSON any more: syntax error
  ExpectRejected(R"("seq":0,)", "", "ops[0].seq: missing");
  ExpectRejected(R"("seq":1,)", R"("seq":1.5,)", "ops[1].seq: expected an unsigned integer, got number");
  ExpectRejected(R"("timestamp_ns":10)", R"("timestamp_ns":null)", "ops[0].timestamp_ns");
  ExpectRejected(R"("success":true,"conn")", R"("success":"yes","conn")", "ops[0].success");
  ExpectRejected(R"("type":"Write")", R"("type":"Discard")", "ops[0].op.type: unknown op type \"Discard\"");
  ExpectRejected(R"("type":"Write")", R"("kind":"Write")", "ops[0].op.type: missing");
  ExpectRejected(R"("offset":0,)", "", "ops[0].op.offset: missing");
  ExpectRejected(R"("length":4096)", R"("length":4294967296)", "ops[0].op.length: 4294967296 is larger");
  ExpectRejected(R"("offset":0,)", R"("offset":1048000,)", "ops[0].op: successful Write");
  ExpectRejected(R"("op":{"type":"Flush"})", R"("op":"Flush")", "ops[1].op: expected an object");
  ExpectRejected(R"("start_ns":5)", R"("start_ns":11)", "ops[0].start_ns: 11 is after");
  ExpectRejected(R"("conn":1)", R"("conn":true)", "ops[0].conn");
  ExpectRejected(R"(["FUA"])", R"(["FUA","SLOW"])", "ops[0].flags[1]: unknown flag \"SLOW\"");
  ExpectRejected(R"(["FUA"])", R"("FUA")", "ops[0].flags: expected an array");
  ExpectRejected(R"({"seq":1,)", R"(7,{"seq":1,)", "ops[1]: expected an object");
}

TEST_CASE("trace reader reports JSON syntax errors with a position", "[trace]") {
  auto t = ParseTrace("{\"workload\": \"w\",\n  \"ops\": [}", "x.json");
  REQUIRE(!t.ok());
  CHECK_THAT(t.status().message(), Catch::StartsWith("x.json: not valid JSON: parse error at line 2"));
  auto missing = LoadTrace("/nonexistent/trace.json");
  CHECK(missing.status().IsNotFound());
  CHECK(!ParseTrace("[]").ok());
}

TEST_CASE("op names and flags round-trip", "[trace]") {
  for (size_t i = 0; i < kNumOpTypes; ++i) {
    auto t = static_cast<OpType>(i);
    CHECK(OpTypeFromName(OpTypeName(t)) == t);
  }
  CHECK(!OpTypeFromName("read"));
  for (size_t i = 0; i < kNumOpFlags; ++i) {
    uint16_t bit = 1u << i;
    CHECK(OpFlagFromName(OpFlagName(bit)) == bit);
  }
  CHECK(IsWriteLike(OpType::kTrim));
  CHECK(!IsWriteLike(OpType::kCache));
  CHECK(LooksLikeRfc3339("2026-01-07T02:58:02.656272+00:00"));
  CHECK(LooksLikeRfc3339("2026-01-07T02:58:02Z"));
  CHECK(!LooksLikeRfc3339("2026-01-07"));
  CHECK(!LooksLikeRfc3339("2026-01-07T02:58:02.Z"));
}

}  // namespace
}  // namespace portal::trace
