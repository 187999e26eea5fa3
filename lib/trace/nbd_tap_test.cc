// NbdTap, byte by byte: between our client handshake and our server's Session (both
// sans-io, no sockets), and against scripted servers for what ours never sends.
#include <catch2/catch.hpp>

#include "nbd/client_handshake.h"
#include "nbd/protocol.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "trace/nbd_tap.h"
#include "util/coding.h"

namespace portal::trace {
namespace {

using namespace nbd;  // NOLINT: protocol constants
using testing::Option;
using testing::Request;

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Recorded final : NbdTap::Sink {
  std::vector<TappedRequest> requests;
  std::vector<uint64_t> exports;
  void OnExport(uint64_t size, uint16_t) override { exports.push_back(size); }
  void OnRequest(const TappedRequest& r) override { requests.push_back(r); }
};

ExportInfo Info() {
  ExportInfo info;
  info.name = "portalbd";
  info.size_bytes = 64ull << 20;
  return info;
}

// client <-> tap <-> Session on a MemoryVolume. Every byte is checked to pass unchanged,
// except options the tap answers itself.
struct Wire {
  std::shared_ptr<testing::MemoryVolume> device =
      std::make_shared<testing::MemoryVolume>(64ull << 20, 4096);
  SingleExportCatalog catalog{Info(), device};
  testing::SessionDriver server{catalog};
  Recorded sink;
  NbdTap tap;
  std::string held;       // client bytes the tap has not taken yet
  std::string client_in;  // what the client received
  std::string server_in;  // what the server received
  uint64_t now = 1000;

  explicit Wire(NbdTap::Options o = {}) : tap(sink, o) { Pump(); }

  void ClientSends(const std::string& bytes) {
    held += bytes;
    Pump();
  }

  void Pump() {
    for (int round = 0; round < 1000; ++round) {
      std::string to_server, to_client;
      size_t used = tap.FromClient(Bytes(held), now += 10, &to_server, &to_client);
      held.erase(0, used);
      client_in += to_client;
      server_in += to_server;
      if (!to_server.empty()) REQUIRE(server.Feed(to_server) == to_server.size());
      std::string out = server.TakeOutput();
      std::string forwarded;
      REQUIRE(tap.FromServer(Bytes(out), now += 10, &forwarded) == out.size());
      REQUIRE(forwarded == out);
      client_in += forwarded;
      if (out.empty() && to_server.empty() && to_client.empty()) return;
    }
    FAIL("wire did not settle");
  }

  // Runs our client handshake to the end.
  ClientNegotiated Handshake(ClientHandshake::Options o) {
    ClientHandshake hs(std::move(o));
    size_t seen = 0;
    for (int i = 0; i < 20 && hs.state() == ClientHandshake::State::kNegotiating; ++i) {
      std::string out;
      std::string in = client_in.substr(seen);
      seen += hs.Consume(Bytes(in), &out);
      ClientSends(out);
    }
    REQUIRE(hs.state() == ClientHandshake::State::kDone);
    client_in.erase(0, seen);
    return hs.negotiated();
  }
};

TEST_CASE("tap records every command type with flags and timing", "[trace]") {
  for (bool structured : {true, false}) {
    INFO("structured " << structured);
    Wire w;
    auto n = w.Handshake({"portalbd", structured, structured});
    CHECK(w.tap.in_transmission());
    CHECK(w.tap.structured_replies() == structured);
    CHECK(w.sink.exports == std::vector<uint64_t>{64ull << 20});
    CHECK(w.tap.export_size() == 64ull << 20);
    std::string data(8192, 'x');
    std::string sent = Request(NBD_CMD_WRITE, 1, 4096, 8192, NBD_CMD_FLAG_FUA, data) +
                       Request(NBD_CMD_READ, 2, 0, 16384) + Request(NBD_CMD_FLUSH, 3, 0, 0) +
                       Request(NBD_CMD_TRIM, 4, 1 << 20, 1 << 20) +
                       Request(NBD_CMD_WRITE_ZEROES, 5, 0, 65536, NBD_CMD_FLAG_NO_HOLE) +
                       Request(NBD_CMD_CACHE, 6, 0, 4096) +
                       Request(NBD_CMD_READ, 7, 64ull << 20, 4096) +  // beyond the end
                       Request(42, 8, 0, 0);                          // unknown command
    if (n.base_allocation) {
      sent += Request(NBD_CMD_BLOCK_STATUS, 9, 0, 1 << 20, NBD_CMD_FLAG_REQ_ONE);
    }
    sent += Request(NBD_CMD_DISC, 10, 0, 0);
    size_t before = w.server_in.size();
    w.ClientSends(sent);
    CHECK(w.server_in.substr(before) == sent);  // forwarded byte for byte
    CHECK(w.tap.inflight() == 0);
    auto& r = w.sink.requests;
    REQUIRE(r.size() == (n.base_allocation ? 8u : 7u));  // not the unknown one, not DISC
    std::map<uint64_t, TappedRequest> by_cookie;
    for (auto& q : r) by_cookie[q.cookie] = q;
    CHECK(by_cookie[1].type == OpType::kWrite);
    CHECK(by_cookie[1].nbd_flags == NBD_CMD_FLAG_FUA);
    CHECK(by_cookie[1].offset == 4096);
    CHECK(by_cookie[1].length == 8192);
    CHECK(by_cookie[1].success);
    CHECK(by_cookie[2].type == OpType::kRead);
    CHECK(by_cookie[3].type == OpType::kFlush);
    CHECK(by_cookie[4].type == OpType::kTrim);
    CHECK(by_cookie[5].type == OpType::kWriteZeroes);
    CHECK(by_cookie[5].nbd_flags == NBD_CMD_FLAG_NO_HOLE);
    CHECK(by_cookie[6].type == OpType::kCache);
    CHECK(by_cookie[7].type == OpType::kRead);
    CHECK(!by_cookie[7].success);
    CHECK(!by_cookie.contains(8));
    if (n.base_allocation) CHECK(by_cookie[9].type == OpType::kBlockStatus);
    for (auto& q : r) {
      CHECK(q.start_ns > 0);
      CHECK(q.end_ns > q.start_ns);
    }
  }
}

TEST_CASE("tap refuses STARTTLS and extended headers itself", "[trace]") {
  Wire w;
  std::string greeting_and_flags;
  w.ClientSends(testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES));
  size_t server_before = w.server_in.size();
  size_t client_before = w.client_in.size();
  w.ClientSends(Option(NBD_OPT_STARTTLS, ""));
  w.ClientSends(Option(NBD_OPT_EXTENDED_HEADERS, "junk"));
  CHECK(w.server_in.size() == server_before);  // neither reached the server
  std::string expect = testing::OptReply(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
                                         "TLS is off in trace-record (--tls)") +
                       testing::OptReply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP,
                                         "trace-record does not parse extended headers");
  CHECK(w.client_in.substr(client_before) == expect);
  CHECK(w.tap.refused_options() == 2);
  w.ClientSends(Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd")));
  CHECK(w.tap.in_transmission());
  w.ClientSends(Request(NBD_CMD_READ, 1, 0, 512));
  CHECK(w.sink.requests.size() == 1);
}

TEST_CASE("tap serves STARTTLS and, under require, refuses options before it", "[trace]") {
  Wire w(NbdTap::Options{.client_tls = TlsMode::kRequire});
  w.ClientSends(testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES));
  const size_t server_before = w.server_in.size();
  size_t client_before = w.client_in.size();
  w.ClientSends(Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd")));
  CHECK(w.client_in.substr(client_before) ==
        testing::OptReply(NBD_OPT_GO, NBD_REP_ERR_TLS_REQD, "TLS is required"));
  client_before = w.client_in.size();
  // STARTTLS, and the GO a client sends over TLS (held until the handshake is done).
  w.ClientSends(Option(NBD_OPT_STARTTLS, "") +
                Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd")));
  CHECK(w.client_in.substr(client_before) == testing::OptReply(NBD_OPT_STARTTLS, NBD_REP_ACK));
  CHECK(w.tap.tls_step() == NbdTap::TlsStep::kClient);
  CHECK(w.server_in.size() == server_before);  // nothing reached the upstream
  CHECK(!w.tap.in_transmission());
  w.tap.TlsStarted();
  w.Pump();
  CHECK(w.tap.client_tls());
  CHECK(w.tap.tls_step() == NbdTap::TlsStep::kNone);
  CHECK(w.tap.in_transmission());
  CHECK(w.tap.close_reason().empty());
  w.ClientSends(Request(NBD_CMD_WRITE, 1, 0, 512, 0, std::string(512, 'w')));
  REQUIRE(w.sink.requests.size() == 1);
  CHECK(w.sink.requests[0].type == OpType::kWrite);
}

TEST_CASE("tap under require hangs up on EXPORT_NAME and old clients before TLS", "[trace]") {
  {
    Wire w(NbdTap::Options{.client_tls = TlsMode::kRequire});
    w.ClientSends(testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE));
    const size_t server_before = w.server_in.size();
    w.ClientSends(Option(NBD_OPT_EXPORT_NAME, "portalbd"));
    CHECK(w.tap.close_reason().find("EXPORT_NAME") != std::string::npos);
    CHECK(w.server_in.size() == server_before);
  }
  {
    Wire w(NbdTap::Options{.client_tls = TlsMode::kRequire});
    w.ClientSends(testing::ClientFlags(0));
    CHECK(w.tap.close_reason().find("fixed newstyle") != std::string::npos);
  }
  {
    Wire w(NbdTap::Options{.client_tls = TlsMode::kOn});  // on: plaintext goes through
    w.Handshake({"portalbd", true, true});
    CHECK(w.tap.in_transmission());
    CHECK(!w.tap.client_tls());
  }
  {
    // STARTTLS after an option went upstream: refused, the two sides would disagree.
    Wire w(NbdTap::Options{.client_tls = TlsMode::kOn});
    w.ClientSends(testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES));
    w.ClientSends(Option(NBD_OPT_STRUCTURED_REPLY, ""));
    CHECK(w.tap.structured_replies());
    const size_t client_before = w.client_in.size();
    w.ClientSends(Option(NBD_OPT_STARTTLS, ""));
    CHECK(w.client_in.substr(client_before) ==
          testing::OptReply(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
                            "trace-record takes STARTTLS only as the first option"));
    CHECK(w.tap.tls_step() == NbdTap::TlsStep::kNone);
    w.ClientSends(Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd")));
    CHECK(w.tap.in_transmission());
  }
}

std::string NewstyleGreeting() {
  uint8_t g[18];
  StoreBE64(g, kNbdMagic);
  StoreBE64(g + 8, kIHaveOpt);
  StoreBE16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  return std::string(reinterpret_cast<const char*>(g), sizeof g);
}

TEST_CASE("tap does STARTTLS towards the upstream before the client's options", "[trace]") {
  for (bool refused : {false, true}) {
    INFO("refused " << refused);
    Recorded sink;
    NbdTap tap(sink, NbdTap::Options{.upstream_tls = true});
    std::string to_client, to_server;
    const std::string greeting = NewstyleGreeting();
    tap.FromServer(Bytes(greeting), 1, &to_client);
    CHECK(to_client == greeting);  // the client sees the upstream's greeting
    const std::string flags =
        testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    const std::string go = Option(NBD_OPT_GO, testing::InfoOrGoData("portalbd"));
    std::string in = flags + go;
    to_client.clear();
    size_t used = tap.FromClient(Bytes(in), 2, &to_server, &to_client);
    CHECK(used == flags.size());  // the GO waits for TLS
    CHECK(to_server == flags + Option(NBD_OPT_STARTTLS, ""));
    in.erase(0, used);
    if (refused) {
      tap.FromServer(Bytes(testing::OptReply(NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, "no")), 3,
                     &to_client);
      CHECK(to_client.empty());  // the reply to our own option is ours
      CHECK(tap.close_reason().find("refused STARTTLS") != std::string::npos);
      CHECK(tap.tls_step() == NbdTap::TlsStep::kNone);
      continue;
    }
    tap.FromServer(Bytes(testing::OptReply(NBD_OPT_STARTTLS, NBD_REP_ACK)), 3, &to_client);
    CHECK(to_client.empty());
    CHECK(tap.tls_step() == NbdTap::TlsStep::kUpstream);
    to_server.clear();
    CHECK(tap.FromClient(Bytes(in), 4, &to_server, &to_client) == 0);
    tap.TlsStarted();
    CHECK(tap.FromClient(Bytes(in), 5, &to_server, &to_client) == in.size());
    CHECK(to_server == go);  // the client's option, after TLS
    CHECK(!tap.client_tls());
    CHECK(tap.close_reason().empty());
  }
}

TEST_CASE("tap holds client bytes while an option is unanswered", "[trace]") {
  Recorded sink;
  NbdTap tap(sink);
  std::string out, back;
  std::string greet;
  PutBE64(&greet, kNbdMagic);
  PutBE64(&greet, kIHaveOpt);
  PutBE16(&greet, NBD_FLAG_FIXED_NEWSTYLE);
  // Nothing from the client is taken before the server's greeting.
  std::string flags = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE);
  CHECK(tap.FromClient(Bytes(flags), 1, &out, &back) == 0);
  CHECK(tap.FromServer(Bytes(greet), 2, &back) == greet.size());
  std::string two = flags + Option(NBD_OPT_STRUCTURED_REPLY, "") + Option(NBD_OPT_LIST, "");
  size_t first = flags.size() + kOptionHeaderSize;
  CHECK(tap.FromClient(Bytes(two), 3, &out, &back) == first);
  CHECK(tap.FromClient(Bytes(two.substr(first)), 4, &out, &back) == 0);
  std::string ack = testing::OptReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
  tap.FromServer(Bytes(ack), 5, &back);
  CHECK(tap.structured_replies());
  CHECK(tap.FromClient(Bytes(two.substr(first)), 6, &out, &back) == kOptionHeaderSize);
  CHECK(out == two);
  CHECK(!tap.blind());
}

TEST_CASE("tap follows EXPORT_NAME with and without NO_ZEROES", "[trace]") {
  for (bool no_zeroes : {true, false}) {
    Wire w;
    w.ClientSends(testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE |
                                       (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0)) +
                  Option(NBD_OPT_EXPORT_NAME, "portalbd"));
    REQUIRE(w.tap.in_transmission());
    CHECK(w.tap.export_size() == 64ull << 20);
    w.ClientSends(Request(NBD_CMD_READ, 1, 0, 4096) + Request(NBD_CMD_WRITE, 2, 0, 3, 0, "abc"));
    REQUIRE(w.sink.requests.size() == 2);
    CHECK(w.sink.requests[1].type == OpType::kWrite);
  }
}

std::string OldstyleGreeting(uint64_t size, uint32_t flags) {
  std::string s;
  PutBE64(&s, kNbdMagic);
  PutBE64(&s, 0x00420281861253ULL);
  PutBE64(&s, size);
  PutBE32(&s, flags);
  s.append(124, '\0');
  return s;
}

TEST_CASE("tap understands oldstyle servers and simple replies", "[trace]") {
  Recorded sink;
  NbdTap tap(sink);
  std::string out, back;
  std::string greet = OldstyleGreeting(1 << 20, NBD_FLAG_HAS_FLAGS);
  for (char c : greet) tap.FromServer(Bytes(std::string(1, c)), 1, &back);  // byte by byte
  CHECK(back == greet);
  REQUIRE(tap.in_transmission());
  CHECK(sink.exports == std::vector<uint64_t>{1 << 20});
  std::string req = Request(NBD_CMD_READ, 5, 0, 10) + Request(NBD_CMD_FLUSH, 6, 0, 0);
  CHECK(tap.FromClient(Bytes(req), 10, &out, &back) == req.size());
  CHECK(tap.inflight() == 2);
  std::string replies = testing::SimpleReply(0, 6) + testing::SimpleReply(0, 5, "0123456789") +
                        testing::SimpleReply(0, 6);  // a stray reply for a finished cookie
  back.clear();
  tap.FromServer(Bytes(replies), 20, &back);
  CHECK(back == replies);
  CHECK(tap.blind());  // the stray reply breaks framing: relay on, record no more
  CHECK_THAT(tap.blind_reason(), Catch::Contains("not in flight"));
  REQUIRE(sink.requests.size() == 2);
  CHECK(sink.requests[0].type == OpType::kFlush);
  CHECK(sink.requests[1].type == OpType::kRead);
  CHECK(sink.requests[1].start_ns == 10);
  CHECK(sink.requests[1].end_ns == 20);
  std::string more = "anything at all";
  out.clear();
  CHECK(tap.FromClient(Bytes(more), 30, &out, &back) == more.size());
  CHECK(out == more);
}

TEST_CASE("tap goes blind on a bad request and keeps relaying", "[trace]") {
  Recorded sink;
  NbdTap tap(sink);
  std::string out, back;
  tap.FromServer(Bytes(OldstyleGreeting(1 << 20, 1)), 1, &back);
  std::string bad = "this is not an NBD request header, nor is this";
  CHECK(tap.FromClient(Bytes(bad), 2, &out, &back) == bad.size());
  CHECK(out == bad);
  CHECK(tap.blind());
  CHECK_THAT(tap.blind_reason(), Catch::Contains("bad request magic"));
}

TEST_CASE("tap bounds the requests it tracks", "[trace]") {
  Wire w(NbdTap::Options{2});
  w.Handshake({"portalbd", true, false});
  std::string three = Request(NBD_CMD_READ, 1, 0, 512) + Request(NBD_CMD_READ, 2, 0, 512) +
                      Request(NBD_CMD_READ, 3, 0, 512);
  std::string out, back;
  CHECK(w.tap.FromClient(Bytes(three), 1, &out, &back) == 2 * kRequestHeaderSize);
  CHECK(w.tap.inflight() == 2);
  w.server.Feed(out);
  std::string replies = w.server.TakeOutput();
  std::string fwd;
  w.tap.FromServer(Bytes(replies), 2, &fwd);
  CHECK(w.tap.inflight() == 0);
  CHECK(w.tap.FromClient(Bytes(three.substr(2 * kRequestHeaderSize)), 3, &out, &back) ==
        kRequestHeaderSize);
}

}  // namespace
}  // namespace portal::trace
