// The recording proxy end to end, in-process: nbd::Client -> Proxy -> our Server on a
// MemoryVolume, then the trace file read back.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "env/block_on.h"
#include "env/real_env.h"
#include "nbd/client.h"
#include "nbd/protocol.h"
#include "nbd/server.h"
#include "testing/memory_volume.h"
#include "testing/testing.h"
#include "trace/proxy.h"
#include "trace/recorder.h"
#include "trace/trace_reader.h"

namespace portal::trace {
namespace {

struct ProxyFixture {
  testing::TempDir dir;
  RealEnv env{RealEnv::Options{2, 2}};
  std::shared_ptr<testing::MemoryVolume> device =
      std::make_shared<testing::MemoryVolume>(32ull << 20, 4096);
  std::unique_ptr<nbd::SingleExportCatalog> catalog;
  std::unique_ptr<nbd::Server> server;
  std::unique_ptr<Recorder> recorder;
  std::unique_ptr<Proxy> proxy;

  explicit ProxyFixture(bool compat = false) {
    env.Start();
    nbd::ExportInfo info;
    info.name = "portalbd";
    info.size_bytes = device->size_bytes();
    catalog = std::make_unique<nbd::SingleExportCatalog>(info, device);
    nbd::Server::Options so;
    so.address = "127.0.0.1:0";
    server = std::make_unique<nbd::Server>(env, *catalog, so);
    REQUIRE(server->Listen().ok());
    server->Start();
    auto r = Recorder::Create({dir.Join("trace.json"), "unit", compat}, env.NowNanos(),
                              env.WallNanos());
    REQUIRE(r.ok());
    recorder = std::move(*r);
    proxy = std::make_unique<Proxy>(
        env, *recorder, Proxy::Options{"unix:" + dir.Join("proxy.sock"), server->bound_address()});
    REQUIRE(proxy->Listen().ok());
    proxy->Start();
  }
  ~ProxyFixture() {
    proxy->Shutdown(1000);
    server->Shutdown(2000);
    env.Stop();
  }
  std::unique_ptr<nbd::Client> Connect() {
    auto c = BlockOn(nbd::Client::Connect(env, {proxy->bound_address(), "portalbd", true, true}));
    REQUIRE(c.ok());
    return std::move(*c);
  }
  Trace Finish() {
    proxy->Shutdown(1000);
    REQUIRE(recorder->Finish(env.NowNanos()).ok());
    auto t = LoadTrace(dir.Join("trace.json"));
    REQUIRE(t.ok());
    return std::move(*t);
  }
};

Task<Status> Workload(nbd::Client& c) {
  std::vector<uint8_t> buf(65536, 0xab);
  for (int i = 0; i < 10; ++i) {
    CO_RETURN_IF_ERROR(co_await c.Write(i * 65536, buf, i == 9 ? nbd::NBD_CMD_FLAG_FUA : 0));
  }
  for (int i = 0; i < 5; ++i) CO_RETURN_IF_ERROR(co_await c.Read(i * 4096, buf));
  CO_RETURN_IF_ERROR(co_await c.Flush());
  CO_RETURN_IF_ERROR(co_await c.Trim(0, 1 << 20));
  CO_RETURN_IF_ERROR(co_await c.WriteZeroes(1 << 20, 1 << 20, nbd::NBD_CMD_FLAG_NO_HOLE));
  CO_RETURN_IF_ERROR(co_await c.Cache(0, 4096));
  auto bs = co_await c.BlockStatus(0, 1 << 20);
  CO_RETURN_IF_ERROR(bs.status());
  // The server refuses a zero-length BLOCK_STATUS: recorded as a failure.
  auto bad = co_await c.BlockStatus(0, 0);
  if (bad.ok()) co_return Status::Corruption("zero-length BLOCK_STATUS succeeded");
  co_return co_await c.Close();
}

TEST_CASE("trace-record proxy records what two clients did", "[trace][proxy]") {
  ProxyFixture f;
  auto a = f.Connect();
  auto b = f.Connect();
  REQUIRE(BlockOn(Workload(*a)).ok());
  REQUIRE(BlockOn(Workload(*b)).ok());
  Trace t = f.Finish();
  CHECK(t.workload == "unit");
  CHECK(t.device_size_bytes == 32ull << 20);
  CHECK(t.duration_ns > 0);
  REQUIRE(t.ops.size() == 2 * 21);
  std::map<OpType, int> counts;
  std::set<uint32_t> conns;
  int failures = 0, fua = 0;
  for (size_t i = 0; i < t.ops.size(); ++i) {
    const TraceOp& op = t.ops[i];
    CHECK(op.seq == i);
    REQUIRE(op.start_ns);
    CHECK(*op.start_ns + op.duration_ns == op.timestamp_ns);
    CHECK(op.timestamp_ns <= t.duration_ns);
    ++counts[op.type];
    conns.insert(op.conn);
    if (!op.success) ++failures;
    if (op.flags & kFlagFua) ++fua;
  }
  CHECK(counts[OpType::kWrite] == 20);
  CHECK(counts[OpType::kRead] == 10);
  CHECK(counts[OpType::kFlush] == 2);
  CHECK(counts[OpType::kTrim] == 2);
  CHECK(counts[OpType::kWriteZeroes] == 2);
  CHECK(counts[OpType::kCache] == 2);
  CHECK(counts[OpType::kBlockStatus] == 4);
  CHECK(conns == std::set<uint32_t>{1, 2});
  CHECK(failures == 2);
  CHECK(fua == 2);
  CHECK(f.proxy->connections_accepted() == 2);
  CHECK(f.proxy->requests_lost() == 0);
}

TEST_CASE("trace-record proxy in compat mode and with a client still connected", "[trace][proxy]") {
  ProxyFixture f(/*compat=*/true);
  auto a = f.Connect();
  REQUIRE(BlockOn(Workload(*a)).ok());
  auto idle = f.Connect();  // still connected when the proxy stops
  Trace t = f.Finish();
  CHECK(t.ops.size() == 21 - 3);  // no BlockStatus, no Cache
  for (const auto& op : t.ops) CHECK(IsOriginalType(op.type));
  CHECK(BlockOn(idle->Flush()).code() == Status::Code::kIOError);
}

TEST_CASE("trace-record proxy relays a failed upstream connection as a closed one", "[trace][proxy]") {
  testing::TempDir dir;
  RealEnv env{RealEnv::Options{1, 1}};
  env.Start();
  auto r = Recorder::Create({dir.Join("t.json"), "x", false}, env.NowNanos(), env.WallNanos());
  REQUIRE(r.ok());
  Proxy proxy(env, **r, {"127.0.0.1:0", "unix:" + dir.Join("nobody-listens")});
  REQUIRE(proxy.Listen().ok());
  proxy.Start();
  auto c = BlockOn(nbd::Client::Connect(env, {proxy.bound_address(), "", true, false}));
  CHECK(!c.ok());
  proxy.Shutdown(100);
  REQUIRE((*r)->Finish(env.NowNanos()).ok());
  env.Stop();
  auto t = LoadTrace(dir.Join("t.json"));
  REQUIRE(t.ok());
  CHECK(t->ops.empty());
  CHECK(Proxy(env, **r, {"127.0.0.1:0", "no-port"}).Listen().code() ==
        Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace portal::trace
