// Session flow control: requests held back by the in-flight bounds are served once the
// bound lifts, and on shutdown every received request is answered.
// (The daemon-level counterparts are in tests/interop/: test_daemon.py sigterm_*,
// test_raw_protocol.py half_close, test_libnbd.py inflight_bytes_bound.)
#include <catch2/catch.hpp>
#include <map>

#include "nbd/protocol.h"
#include "nbd/session.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

using testing::Request;

ExportInfo Info() {
  ExportInfo info;
  info.name = "portalbd";
  info.size_bytes = 1ull << 30;
  return info;
}

// A session in transmission (simple replies) on a 1 GiB MemoryVolume.
struct Fixture {
  std::shared_ptr<testing::MemoryVolume> device =
      std::make_shared<testing::MemoryVolume>(1ull << 30, 4096);
  SingleExportCatalog catalog{Info(), device};
  testing::SessionDriver driver{catalog};
  Session& session = driver.session();

  Fixture() {
    std::string hello = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
                        testing::Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd"));
    REQUIRE(driver.Feed(hello) == hello.size());
    REQUIRE(session.in_transmission());
    driver.TakeOutput();  // greeting and option replies
  }
};

// Simple replies: cookie -> error; READ data is skipped (its length is known).
std::map<uint64_t, uint32_t> ParseSimpleReplies(std::string_view out, uint32_t read_length) {
  std::map<uint64_t, uint32_t> replies;
  while (!out.empty()) {
    REQUIRE(out.size() >= kSimpleReplyHeaderSize);
    const auto* p = reinterpret_cast<const uint8_t*>(out.data());
    REQUIRE(LoadBE32(p) == NBD_SIMPLE_REPLY_MAGIC);
    uint32_t error = LoadBE32(p + 4);
    uint64_t cookie = LoadBE64(p + 8);
    REQUIRE(replies.count(cookie) == 0);
    replies[cookie] = error;
    size_t skip = kSimpleReplyHeaderSize + (error == 0 ? read_length : 0);
    REQUIRE(out.size() >= skip);
    out.remove_prefix(skip);
  }
  return replies;
}

TEST_CASE("Session serves requests held back by the byte bound once output drains", "[nbd]") {
  Fixture f;
  // 64 READs of 4 MiB in one burst: the byte bound (128 MiB of replies) pauses parsing
  // after about half. Draining the output must resume it without any further input:
  // a client that sent everything and now only reads replies must get them all.
  constexpr uint32_t kLen = 4u << 20;
  std::string batch;
  for (uint64_t i = 1; i <= 64; ++i) batch += Request(NBD_CMD_READ, i, 0, kLen);
  REQUIRE(f.driver.Feed(batch) == batch.size());
  auto replies = ParseSimpleReplies(f.driver.TakeOutput(), kLen);
  CHECK(replies.size() == 64);
  for (const auto& [cookie, error] : replies) CHECK(error == 0);
  CHECK(!f.session.InputSpace().empty());  // reading again: nothing is held back
}

TEST_CASE("Session shutdown answers every received request", "[nbd]") {
  Fixture f;
  // 64 READs of 4 MiB: twice the in-flight byte bound, so about half of them wait in the
  // input buffer while their predecessors' replies are unsent.
  constexpr uint32_t kLen = 4u << 20;
  std::string batch;
  for (uint64_t i = 1; i <= 64; ++i) batch += Request(NBD_CMD_READ, i, 0, kLen);
  REQUIRE(f.driver.Feed(batch) == batch.size());
  REQUIRE(f.session.InputSpace().empty());  // paused by the bound

  f.session.Shutdown();
  auto replies = ParseSimpleReplies(f.driver.TakeOutput(), kLen);
  REQUIRE(replies.size() == 64);
  size_t served = 0, shut = 0;
  for (const auto& [cookie, error] : replies) {
    if (error == 0) {
      ++served;
    } else {
      CHECK(error == NBD_ESHUTDOWN);
      ++shut;
    }
  }
  CHECK(served > 0);
  CHECK(shut > 0);
  CHECK(f.session.Finished());
  CHECK(f.session.InputSpace().empty());
}

TEST_CASE("Session shutdown answers a WRITE whose payload is incomplete", "[nbd]") {
  Fixture f;
  // Buffered: a whole WRITE, then one with half its payload.
  std::string bytes = Request(NBD_CMD_WRITE, 7, 0, 4096, 0, std::string(4096, 'a'));
  bytes += Request(NBD_CMD_WRITE, 8, 4096, 8192, 0, std::string(4096, 'b'));
  REQUIRE(f.driver.Feed(bytes) == bytes.size());
  auto before = ParseSimpleReplies(f.driver.TakeOutput(), 0);
  CHECK(before == std::map<uint64_t, uint32_t>{{7, 0}});

  f.session.Shutdown();
  auto after = ParseSimpleReplies(f.driver.TakeOutput(), 0);
  CHECK(after == std::map<uint64_t, uint32_t>{{8, NBD_ESHUTDOWN}});
  CHECK(f.session.Finished());
  CHECK(f.device->data_blocks() == 1);  // the half-received WRITE was never applied
}

TEST_CASE("Session shutdown with nothing pending finishes at once", "[nbd]") {
  Fixture f;
  f.session.Shutdown();
  CHECK(f.driver.TakeOutput().empty());
  CHECK(f.session.Finished());
}

}  // namespace
}  // namespace portal::nbd
