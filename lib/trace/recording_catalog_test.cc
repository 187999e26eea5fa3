// Server-side recording: real nbd::Sessions (byte scripts) on a RecordingCatalog over a
// MemoryVolume, simulated time, then the trace file read back with the trace reader.
#include "trace/recording_catalog.h"

#include <catch2/catch.hpp>

#include "env/sim_env.h"
#include "nbd/protocol.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "testing/testing.h"
#include "trace/trace_reader.h"

namespace portal::trace {
namespace {

using namespace nbd;  // NBD_* constants
using testing::ClientFlags;
using testing::InfoOrGoData;
using testing::MetaData;
using testing::Option;
using testing::Request;
using testing::SessionDriver;

constexpr uint64_t kSize = 1 << 20;

struct Fixture {
  explicit Fixture(std::string export_name = "portalbd") {
    recorder = std::shared_ptr<Recorder>(
        std::move(*Recorder::Create({dir.Join("t.json"), "unit"}, env.NowNanos(), 0)));
    auto inner =
        std::make_unique<SingleExportCatalog>(ExportInfo{std::move(export_name), "", kSize, false},
                                              std::make_shared<testing::MemoryVolume>(kSize, 4096));
    catalog = std::make_unique<RecordingCatalog>(std::move(inner), recorder, env, "portalbd");
  }
  Trace Finish() {
    REQUIRE(recorder->Finish(env.NowNanos()).ok());
    auto t = LoadTrace(dir.Join("t.json"));
    REQUIRE(t.ok());
    return *t;
  }

  testing::TempDir dir;
  SimEnv env;
  std::shared_ptr<Recorder> recorder;
  std::unique_ptr<RecordingCatalog> catalog;
};

void Attach(SessionDriver& d, bool structured, std::string_view name = "portalbd") {
  std::string s = ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  if (structured) {
    s += Option(NBD_OPT_STRUCTURED_REPLY, "");
    s += Option(NBD_OPT_SET_META_CONTEXT, MetaData(name, {"base:allocation"}));
  }
  s += Option(NBD_OPT_GO, InfoOrGoData(name));
  d.Feed(s);
  d.TakeOutput();
  REQUIRE(d.session().in_transmission());
}

TEST_CASE("recording: every answered request, per connection, with flags and times", "[trace]") {
  Fixture f;
  SessionDriver c1(*f.catalog);
  Attach(c1, false);
  SessionDriver c2(*f.catalog);
  Attach(c2, true);
  CHECK(f.catalog->connections() == 2);

  // A FUA write whose payload arrives 5 ms after its header: start is the header.
  f.env.AdvanceBy(1 * kNanosPerMilli);
  std::string write =
      Request(NBD_CMD_WRITE, 1, 4096, 4096, NBD_CMD_FLAG_FUA, std::string(4096, 'w'));
  c1.Feed(write.substr(0, 100));
  f.env.AdvanceBy(5 * kNanosPerMilli);
  c1.Feed(write.substr(100));
  c1.Feed(Request(NBD_CMD_READ, 2, 0, 8192) + Request(NBD_CMD_FLUSH, 3, 0, 0) +
          Request(NBD_CMD_TRIM, 4, 0, 512) +
          Request(NBD_CMD_WRITE_ZEROES, 5, 8192, 4096, NBD_CMD_FLAG_NO_HOLE) +
          Request(NBD_CMD_CACHE, 6, 0, 4096) +
          Request(NBD_CMD_READ, 7, kSize, 4096) +                          // out of range
          Request(NBD_CMD_WRITE, 8, kSize, 16, 0, std::string(16, 'x')) +  // drained
          Request(NBD_CMD_DISC, 9, 0, 0));                                 // not a request
  c1.TakeOutput();
  c2.Feed(Request(NBD_CMD_BLOCK_STATUS, 1, 0, kSize, NBD_CMD_FLAG_REQ_ONE) +
          Request(NBD_CMD_READ, 2, 4096, 4096, NBD_CMD_FLAG_DF));
  c2.TakeOutput();
  f.env.AdvanceBy(kNanosPerMilli);

  Trace t = f.Finish();
  CHECK(t.workload == "unit");
  CHECK(t.device_size_bytes == kSize);
  CHECK(t.duration_ns == 7 * kNanosPerMilli);
  REQUIRE(t.ops.size() == 10);
  struct Want {
    uint32_t conn;
    OpType type;
    uint64_t offset, length;
    uint16_t flags;
    bool success;
  };
  const Want want[] = {
      {1, OpType::kWrite, 4096, 4096, kFlagFua, true},
      {1, OpType::kRead, 0, 8192, 0, true},
      {1, OpType::kFlush, 0, 0, 0, true},
      {1, OpType::kTrim, 0, 512, 0, true},
      {1, OpType::kWriteZeroes, 8192, 4096, kFlagNoHole, true},
      {1, OpType::kCache, 0, 4096, 0, true},
      {1, OpType::kRead, kSize, 4096, 0, false},
      {1, OpType::kWrite, kSize, 16, 0, false},
      {2, OpType::kBlockStatus, 0, kSize, kFlagReqOne, true},
      {2, OpType::kRead, 4096, 4096, kFlagDf, true},
  };
  for (size_t i = 0; i < t.ops.size(); ++i) {
    INFO("op " << i);
    const TraceOp& op = t.ops[i];
    CHECK(op.seq == i);
    CHECK(op.conn == want[i].conn);
    CHECK(op.type == want[i].type);
    CHECK(op.offset == want[i].offset);
    CHECK(op.length == want[i].length);
    CHECK(op.flags == want[i].flags);
    CHECK(op.success == want[i].success);
    REQUIRE(op.start_ns.has_value());
  }
  CHECK(*t.ops[0].start_ns == 1 * kNanosPerMilli);
  CHECK(t.ops[0].duration_ns == 5 * kNanosPerMilli);
  CHECK(t.ops[0].timestamp_ns == 6 * kNanosPerMilli);
  CHECK(*t.ops[1].start_ns == 6 * kNanosPerMilli);
  CHECK(t.ops[1].duration_ns == 0);
}

TEST_CASE("recording: other exports are served unrecorded", "[trace]") {
  Fixture f("other");
  SessionDriver c(*f.catalog);
  Attach(c, false, "other");
  c.Feed(Request(NBD_CMD_WRITE, 1, 0, 512, 0, std::string(512, 'a')) +
         Request(NBD_CMD_FLUSH, 2, 0, 0));
  CHECK(c.TakeOutput().size() == 2 * kSimpleReplyHeaderSize);
  CHECK(f.catalog->connections() == 0);
  (void)f.recorder->SetDeviceSize(kSize);
  Trace t = f.Finish();
  CHECK(t.ops.empty());
  CHECK(f.catalog->record_errors() == 0);
}

TEST_CASE("recording: requests answered after the trace ended are not errors", "[trace]") {
  Fixture f;
  SessionDriver c(*f.catalog);
  Attach(c, false);
  c.Feed(Request(NBD_CMD_FLUSH, 1, 0, 0));
  Trace t = f.Finish();
  CHECK(t.ops.size() == 1);
  c.Feed(Request(NBD_CMD_FLUSH, 2, 0, 0));
  CHECK(c.TakeOutput().size() == 2 * kSimpleReplyHeaderSize);
  CHECK(f.catalog->record_errors() == 0);
}

}  // namespace
}  // namespace portal::trace
