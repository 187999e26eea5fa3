// Session flow control: requests held back by the in-flight bounds are served once the
// bound lifts, and on shutdown every received request is answered.
// (The daemon-level counterparts are in tests/interop/: test_daemon.py sigterm_*,
// test_raw_protocol.py half_close, test_libnbd.py inflight_bytes_bound.)
#include <catch2/catch.hpp>
#include <cstring>
#include <map>

#include "nbd/protocol.h"
#include "nbd/session.h"
#include "nbd/transmission.h"
#include "util/coding.h"
#include "volume/memory_volume.h"

namespace portal::nbd {
namespace {

// Runs deferred completions only when told to (MemoryVolume completes inline anyway).
class TestHost final : public Session::Host {
 public:
  void RunInContext(std::function<void()> fn) override { queue_.push_back(std::move(fn)); }
  std::shared_ptr<void> KeepAlive() override { return nullptr; }
  void RunAll() {
    while (!queue_.empty()) {
      auto fn = std::move(queue_.front());
      queue_.erase(queue_.begin());
      fn();
    }
  }

 private:
  std::vector<std::function<void()>> queue_;
};

ExportInfo Info() {
  ExportInfo info;
  info.name = "portalbd";
  info.size_bytes = 1ull << 30;
  return info;
}

struct Fixture {
  std::shared_ptr<volume::MemoryVolume> device =
      std::make_shared<volume::MemoryVolume>(1ull << 30, 4096);
  SingleExportCatalog catalog{Info(), device};
  TestHost host;
  Session session{catalog, host, "test"};

  Fixture() {
    session.Start();
    std::string hello;
    PutBE32(&hello, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    PutBE64(&hello, kIHaveOpt);
    PutBE32(&hello, NBD_OPT_GO);
    PutBE32(&hello, 4 + 8 + 2);
    PutBE32(&hello, 8);
    hello += "portalbd";
    PutBE16(&hello, 0);
    Feed(hello);
    REQUIRE(session.in_transmission());
    Output();  // greeting and option replies
  }

  void Feed(std::string_view bytes) {
    while (!bytes.empty()) {
      std::span<uint8_t> space = session.InputSpace();
      REQUIRE(!space.empty());
      size_t n = std::min(space.size(), bytes.size());
      std::memcpy(space.data(), bytes.data(), n);
      bytes.remove_prefix(n);
      session.CommitInput(n);
    }
  }

  std::string Output() {
    std::string out;
    while (session.HasOutput()) {
      std::vector<std::span<const uint8_t>> bufs;
      session.GatherOutput(&bufs, 64);
      size_t n = 0;
      for (auto b : bufs) {
        out.append(reinterpret_cast<const char*>(b.data()), b.size());
        n += b.size();
      }
      session.ConsumeOutput(n);
    }
    return out;
  }
};

std::string Request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length) {
  uint8_t b[kRequestHeaderSize];
  EncodeRequestHeader({0, type, cookie, offset, length}, b);
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

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
  f.Feed(batch);
  std::string out;
  for (int round = 0; round < 100 && out.size() < 64 * (kSimpleReplyHeaderSize + kLen); ++round) {
    f.host.RunAll();
    out += f.Output();
  }
  auto replies = ParseSimpleReplies(out, kLen);
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
  f.Feed(batch);
  f.host.RunAll();
  REQUIRE(f.session.InputSpace().empty());  // paused by the bound

  f.session.Shutdown();
  f.host.RunAll();
  auto replies = ParseSimpleReplies(f.Output(), kLen);
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
  std::string bytes = Request(NBD_CMD_WRITE, 7, 0, 4096) + std::string(4096, 'a');
  bytes += Request(NBD_CMD_WRITE, 8, 4096, 8192) + std::string(4096, 'b');
  f.Feed(bytes);
  f.host.RunAll();
  auto before = ParseSimpleReplies(f.Output(), 0);
  CHECK(before == std::map<uint64_t, uint32_t>{{7, 0}});

  f.session.Shutdown();
  auto after = ParseSimpleReplies(f.Output(), 0);
  CHECK(after == std::map<uint64_t, uint32_t>{{8, NBD_ESHUTDOWN}});
  CHECK(f.session.Finished());
  CHECK(f.device->data_blocks() == 1);  // the half-received WRITE was never applied
}

TEST_CASE("Session shutdown with nothing pending finishes at once", "[nbd]") {
  Fixture f;
  f.session.Shutdown();
  CHECK(f.Output().empty());
  CHECK(f.session.Finished());
}

}  // namespace
}  // namespace portal::nbd
