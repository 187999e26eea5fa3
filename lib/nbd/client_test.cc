// nbd::Client against our server over loopback TCP and a unix socket, in-process.
#include <catch2/catch.hpp>

#include <random>

#include "env/block_on.h"
#include "env/real_env.h"
#include "nbd/client.h"
#include "nbd/protocol.h"
#include "nbd/server.h"
#include "testing/memory_volume.h"
#include "testing/testing.h"

namespace portal::nbd {
namespace {

struct ServerFixture {
  RealEnv env{RealEnv::Options{2, 2}};
  std::shared_ptr<testing::MemoryVolume> device =
      std::make_shared<testing::MemoryVolume>(64ull << 20, 4096);
  std::unique_ptr<SingleExportCatalog> catalog;
  std::unique_ptr<Server> server;

  explicit ServerFixture(std::string address = "127.0.0.1:0") {
    env.Start();
    ExportInfo info;
    info.name = "portalbd";
    info.size_bytes = device->size_bytes();
    catalog = std::make_unique<SingleExportCatalog>(info, device);
    Server::Options o;
    o.address = std::move(address);
    server = std::make_unique<Server>(env, *catalog, o);
    REQUIRE(server->Listen().ok());
    server->Start();
  }
  ~ServerFixture() {
    server->Shutdown(2000);
    env.Stop();
  }
  std::unique_ptr<Client> Connect(bool structured = true, bool meta = true) {
    auto c = BlockOn(Client::Connect(env, {server->bound_address(), "portalbd", structured, meta}));
    REQUIRE(c.ok());
    return std::move(*c);
  }
};

std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_CASE("nbd client: every command against our server", "[nbd][client]") {
  for (bool structured : {true, false}) {
    INFO("structured " << structured);
    ServerFixture f;
    auto c = f.Connect(structured, structured);
    CHECK(c->size_bytes() == 64ull << 20);
    CHECK(c->negotiated().structured_replies == structured);
    auto data = Random(1 << 20, 1);
    REQUIRE(BlockOn(c->Write(4096, data, NBD_CMD_FLAG_FUA)).ok());
    std::vector<uint8_t> back(data.size());
    REQUIRE(BlockOn(c->Read(4096, back)).ok());
    CHECK(back == data);
    REQUIRE(BlockOn(c->Flush()).ok());
    REQUIRE(BlockOn(c->Trim(4096, 65536)).ok());
    REQUIRE(BlockOn(c->WriteZeroes(4096 + 65536, 4096, NBD_CMD_FLAG_NO_HOLE)).ok());
    REQUIRE(BlockOn(c->Read(4096, back)).ok());
    CHECK(std::all_of(back.begin(), back.begin() + 65536 + 4096, [](uint8_t b) { return b == 0; }));
    CHECK(std::equal(back.begin() + 65536 + 4096, back.end(), data.begin() + 65536 + 4096));
    REQUIRE(BlockOn(c->Cache(0, 4096)).ok());
    auto bs = BlockOn(c->BlockStatus(0, 1 << 20));
    if (structured) {
      REQUIRE(bs.ok());
      REQUIRE(!bs->empty());
      CHECK(bs->front().hole);  // [0, 4096) was never written
    } else {
      CHECK(bs.status().IsNotSupported());
    }
    // Checked before sending: the connection stays usable.
    CHECK(BlockOn(c->Read(64ull << 20, back)).code() == Status::Code::kInvalidArgument);
    REQUIRE(BlockOn(c->Read(0, std::span<uint8_t>(back.data(), 512))).ok());
    REQUIRE(BlockOn(c->Close()).ok());
    CHECK(BlockOn(c->Flush()).code() == Status::Code::kShutdown);
  }
}

Task<std::vector<Status>> Many(Client& c, std::vector<std::vector<uint8_t>>& bufs, bool write) {
  std::vector<Task<Status>> tasks;
  for (size_t i = 0; i < bufs.size(); ++i) {
    uint64_t off = i * 8192;
    if (write) {
      tasks.push_back(c.Write(off, bufs[i]));
    } else {
      tasks.push_back(c.Read(off, bufs[i]));
    }
  }
  co_return co_await WhenAll(std::move(tasks));
}

TEST_CASE("nbd client: pipelined requests over a unix socket", "[nbd][client]") {
  testing::TempDir dir;
  ServerFixture f("unix:" + dir.Join("nbd.sock"));
  auto c = f.Connect();
  std::vector<std::vector<uint8_t>> bufs;
  for (size_t i = 0; i < 600; ++i) bufs.push_back(Random(8192, i));  // > max_inflight
  auto written = BlockOn(Many(*c, bufs, true));
  for (auto& s : written) REQUIRE(s.ok());
  std::vector<std::vector<uint8_t>> back(bufs.size(), std::vector<uint8_t>(8192));
  auto read = BlockOn(Many(*c, back, false));
  for (auto& s : read) REQUIRE(s.ok());
  CHECK(back == bufs);
}

TEST_CASE("nbd client: requests fail once the server is gone", "[nbd][client]") {
  ServerFixture f;
  auto c = f.Connect();
  REQUIRE(BlockOn(c->Flush()).ok());
  f.server->Shutdown(2000);
  Status st = BlockOn(c->Flush());
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(BlockOn(c->Flush()).code() == Status::Code::kIOError);  // and stay failed
  auto refused = BlockOn(Client::Connect(f.env, {f.server->bound_address(), "", true, false}));
  CHECK(!refused.ok());
}

TEST_CASE("nbd URIs", "[nbd][client]") {
  auto a = ParseNbdUri("nbd://127.0.0.1:10810/portalbd");
  REQUIRE(a.ok());
  CHECK(a->address == "127.0.0.1:10810");
  CHECK(a->export_name == "portalbd");
  auto b = ParseNbdUri("nbd://localhost");
  REQUIRE(b.ok());
  CHECK(b->address == "localhost:10809");
  CHECK(b->export_name.empty());
  auto c = ParseNbdUri("nbd+unix:///x?socket=/tmp/s.sock");
  REQUIRE(c.ok());
  CHECK(c->address == "unix:/tmp/s.sock");
  CHECK(c->export_name == "x");
  auto d = ParseNbdUri("nbd://[::1]:99/e");
  REQUIRE(d.ok());
  CHECK(d->address == "[::1]:99");
  CHECK(!ParseNbdUri("http://x").ok());
  CHECK(!ParseNbdUri("nbd+unix:///x").ok());
}

}  // namespace
}  // namespace portal::nbd
