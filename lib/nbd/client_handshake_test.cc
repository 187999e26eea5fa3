// The client handshake against the server's own sans-io Handshake, and against scripted
// servers for what ours never says (no GO, refusals, oldstyle).
#include <catch2/catch.hpp>

#include "nbd/client_handshake.h"
#include "nbd/handshake.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

using testing::OptReply;

ExportInfo Info() {
  ExportInfo info;
  info.name = "portalbd";
  info.size_bytes = 3ull << 30;
  info.preferred_block_size = 8192;
  return info;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Runs both sides until neither has anything to say.
ClientHandshake::State Converse(ClientHandshake& client, Handshake& server) {
  std::string to_client, to_server;
  server.Begin(&to_client);
  for (int round = 0; round < 20; ++round) {
    if (to_client.empty() && to_server.empty()) break;
    std::string in = std::move(to_client);
    to_client.clear();
    REQUIRE(client.Consume(Bytes(in), &to_server) == in.size());
    std::string out = std::move(to_server);
    to_server.clear();
    REQUIRE(server.Consume(Bytes(out), &to_client) == out.size());
  }
  return client.state();
}

TEST_CASE("client handshake negotiates with our server", "[nbd]") {
  auto device = std::make_shared<testing::MemoryVolume>(3ull << 30, 4096);
  SingleExportCatalog catalog(Info(), device);
  for (bool structured : {true, false}) {
    for (bool meta : {true, false}) {
      INFO("structured " << structured << " meta " << meta);
      Handshake server(catalog);
      ClientHandshake client({"portalbd", structured, meta});
      REQUIRE(Converse(client, server) == ClientHandshake::State::kDone);
      REQUIRE(server.state() == Handshake::State::kTransmission);
      const ClientNegotiated& n = client.negotiated();
      CHECK(n.size_bytes == 3ull << 30);
      CHECK(n.transmission_flags == server.negotiated().transmission_flags);
      CHECK(n.structured_replies == structured);
      CHECK(server.negotiated().structured_replies == structured);
      CHECK(n.base_allocation == (structured && meta));
      CHECK(server.negotiated().base_allocation == (structured && meta));
      if (n.base_allocation) CHECK(n.base_allocation_id == server.negotiated().base_allocation_id);
      CHECK(n.preferred_block_size == 8192);
      CHECK(n.max_payload == 32u << 20);
    }
  }
}

TEST_CASE("client handshake reports an unknown export with the server's message", "[nbd]") {
  auto device = std::make_shared<testing::MemoryVolume>(1 << 20, 4096);
  SingleExportCatalog catalog(Info(), device);
  Handshake server(catalog);
  ClientHandshake client({"nope", true, false});
  REQUIRE(Converse(client, server) == ClientHandshake::State::kFailed);
  CHECK_THAT(client.error().message(), Catch::Contains("refused export \"nope\""));
  CHECK_THAT(client.error().message(), Catch::Contains("NBD_REP_ERR_UNKNOWN"));
}

std::string Greeting(uint16_t flags) {
  std::string s;
  PutBE64(&s, kNbdMagic);
  PutBE64(&s, kIHaveOpt);
  PutBE16(&s, flags);
  return s;
}

TEST_CASE("client handshake falls back to EXPORT_NAME when GO is unknown", "[nbd]") {
  for (bool no_zeroes : {true, false}) {
    ClientHandshake client({"e", false, false});
    std::string out;
    std::string greet = Greeting(NBD_FLAG_FIXED_NEWSTYLE | (no_zeroes ? NBD_FLAG_NO_ZEROES : 0));
    REQUIRE(client.Consume(Bytes(greet), &out) == greet.size());
    std::string expect = testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE |
                                              (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0)) +
                         testing::Option(NBD_OPT_GO, testing::InfoOrGoData("e", {NBD_INFO_BLOCK_SIZE}));
    CHECK(out == expect);
    out.clear();
    std::string unsup = OptReply(NBD_OPT_GO, NBD_REP_ERR_UNSUP);
    REQUIRE(client.Consume(Bytes(unsup), &out) == unsup.size());
    CHECK(out == testing::Option(NBD_OPT_EXPORT_NAME, "e"));
    std::string reply;
    PutBE64(&reply, 12345);
    PutBE16(&reply, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
    if (!no_zeroes) reply.append(124, '\0');
    reply.append("extra");  // transmission bytes are not the handshake's
    out.clear();
    CHECK(client.Consume(Bytes(reply), &out) == reply.size() - 5);
    REQUIRE(client.state() == ClientHandshake::State::kDone);
    CHECK(client.negotiated().size_bytes == 12345);
    CHECK(client.negotiated().transmission_flags == (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH));
  }
}

TEST_CASE("client handshake refuses servers it cannot talk to", "[nbd]") {
  std::string out;
  ClientHandshake a({"", true, false});
  std::string plain = Greeting(0);
  a.Consume(Bytes(plain), &out);
  CHECK(a.state() == ClientHandshake::State::kFailed);
  CHECK_THAT(a.error().message(), Catch::Contains("fixed newstyle"));
  ClientHandshake b({"", true, false});
  std::string old;
  PutBE64(&old, kNbdMagic);
  PutBE64(&old, 0x00420281861253ULL);
  PutBE16(&old, 0);
  b.Consume(Bytes(old), &out);
  CHECK_THAT(b.error().message(), Catch::Contains("oldstyle"));
  ClientHandshake c({"", true, false});
  c.Consume(Bytes(std::string(18, 'x')), &out);
  CHECK_THAT(c.error().message(), Catch::Contains("not an NBD server"));
}

}  // namespace
}  // namespace portal::nbd
