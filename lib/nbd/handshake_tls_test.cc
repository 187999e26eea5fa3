// Byte-exact tests of NBD_OPT_STARTTLS in the handshake codec (proto.md "TLS support"):
// FORCEDTLS ("require"), SELECTIVETLS with no TLS-only export ("on"), and the upgrade
// itself as the session sees it (the transport is simulated: OnTlsStarted()).
#include <catch2/catch.hpp>

#include "nbd/handshake.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

using testing::ClientFlags;
using testing::InfoOrGoData;
using testing::MetaData;
using testing::Option;
using testing::OptReply;
using testing::SessionDriver;

constexpr uint64_t kSize = 1 << 20;

struct Fixture : testing::MemoryExport {
  Fixture() : MemoryExport(kSize) {}
};

Session::Options WithTls(TlsMode mode) {
  Session::Options o;
  o.tls = mode;
  return o;
}

const std::string kFixed = ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

// Returns the reply types of the option replies in `out`, in order.
std::vector<uint32_t> ReplyTypes(const std::string& out) {
  std::vector<uint32_t> types;
  size_t pos = 0;
  while (pos + kOptionReplyHeaderSize <= out.size()) {
    auto p = reinterpret_cast<const uint8_t*>(out.data()) + pos;
    types.push_back(LoadBE32(p + 12));
    pos += kOptionReplyHeaderSize + LoadBE32(p + 16);
  }
  REQUIRE(pos == out.size());
  return types;
}

TEST_CASE("tls=require: every option but STARTTLS and ABORT gets TLS_REQD", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kRequire));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_LIST, "") + Option(NBD_OPT_INFO, InfoOrGoData("portalbd")) +
         Option(NBD_OPT_GO, InfoOrGoData("portalbd")) + Option(NBD_OPT_STRUCTURED_REPLY, "") +
         Option(NBD_OPT_LIST_META_CONTEXT, MetaData("portalbd", {})) + Option(42, "xyz") +
         Option(NBD_OPT_GO, InfoOrGoData("nosuch")));
  const uint32_t reqd = NBD_REP_ERR_TLS_REQD;
  CHECK(ReplyTypes(d.TakeOutput()) ==
        std::vector<uint32_t>{reqd, reqd, reqd, reqd, reqd, reqd, reqd});
  CHECK(d.session().in_handshake());
  // Oversized options, discarded as they stream, are refused the same way.
  d.Feed(Option(NBD_OPT_INFO, std::string(Handshake::kMaxOptionLength + 1, 'x')));
  CHECK(ReplyTypes(d.TakeOutput()) == std::vector<uint32_t>{reqd});
  d.Feed(Option(NBD_OPT_ABORT, ""));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_ABORT, NBD_REP_ACK));
  CHECK(d.session().Finished());
}

TEST_CASE("tls=require: EXPORT_NAME before TLS hangs up without a byte", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kRequire));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_EXPORT_NAME, "portalbd"));
  CHECK(d.TakeOutput().empty());
  CHECK(d.session().Finished());
  CHECK(!d.session().in_transmission());
}

TEST_CASE("tls=require: a client without fixed newstyle is refused", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kRequire));
  d.TakeOutput();
  d.Feed(ClientFlags(0));
  CHECK(d.session().Finished());
}

TEST_CASE("STARTTLS is acknowledged, then no input is read until the upgrade", "[nbd][tls]") {
  for (TlsMode mode : {TlsMode::kOn, TlsMode::kRequire}) {
    Fixture f;
    SessionDriver d(f.catalog, WithTls(mode));
    d.TakeOutput();
    d.Feed(kFixed + Option(NBD_OPT_STARTTLS, ""));
    CHECK(d.TakeOutput() == OptReply(NBD_OPT_STARTTLS, NBD_REP_ACK));
    CHECK(d.session().WantsTls());
    CHECK(d.session().InputSpace().empty());  // the TLS stream reads from now on
    CHECK(d.session().in_handshake());
    d.session().OnTlsStarted();
    CHECK(!d.session().WantsTls());
    // Under TLS nothing is TLS_REQD; a second STARTTLS is INVALID.
    d.Feed(Option(NBD_OPT_STARTTLS, "") + Option(NBD_OPT_LIST, ""));
    auto types = ReplyTypes(d.TakeOutput());
    CHECK(types == std::vector<uint32_t>{NBD_REP_ERR_INVALID, NBD_REP_SERVER, NBD_REP_ACK});
    d.Feed(Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
    d.TakeOutput();
    CHECK(d.session().in_transmission());
  }
}

TEST_CASE("tls=on: a client without fixed newstyle gets no STARTTLS", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kOn));
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_NO_ZEROES) + Option(NBD_OPT_STARTTLS, ""));
  CHECK(ReplyTypes(d.TakeOutput()) == std::vector<uint32_t>{NBD_REP_ERR_UNSUP});
  CHECK(!d.session().WantsTls());
}

TEST_CASE("STARTTLS with data is INVALID and negotiation continues", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kRequire));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_STARTTLS, "x"));
  CHECK(ReplyTypes(d.TakeOutput()) == std::vector<uint32_t>{NBD_REP_ERR_INVALID});
  CHECK(!d.session().WantsTls());
  d.Feed(Option(NBD_OPT_STARTTLS, ""));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_STARTTLS, NBD_REP_ACK));
  CHECK(d.session().WantsTls());
}

TEST_CASE("plaintext sent behind STARTTLS is never acted on: the connection ends", "[nbd][tls]") {
  // An attacker in the middle could append plaintext options after the client's
  // STARTTLS (CVE-2021-3716 in nbdkit); they must not take effect under TLS.
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kOn));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_STARTTLS, "") + Option(NBD_OPT_STRUCTURED_REPLY, ""));
  CHECK(d.TakeOutput().empty());  // not even the ACK: nothing more is sent in plaintext
  CHECK(d.session().Finished());
  CHECK(!d.session().WantsTls());
}

TEST_CASE("STARTTLS forgets structured replies and meta contexts negotiated before it",
          "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kOn));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_STRUCTURED_REPLY, "") +
         Option(NBD_OPT_SET_META_CONTEXT, MetaData("portalbd", {"base:allocation"})));
  CHECK(ReplyTypes(d.TakeOutput()) ==
        std::vector<uint32_t>{NBD_REP_ACK, NBD_REP_META_CONTEXT, NBD_REP_ACK});
  d.Feed(Option(NBD_OPT_STARTTLS, ""));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_STARTTLS, NBD_REP_ACK));
  d.session().OnTlsStarted();
  // Meta contexts need structured replies again: the earlier request is gone.
  d.Feed(Option(NBD_OPT_LIST_META_CONTEXT, MetaData("portalbd", {})));
  CHECK(ReplyTypes(d.TakeOutput()) == std::vector<uint32_t>{NBD_REP_ERR_INVALID});
  d.Feed(Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  d.TakeOutput();
  REQUIRE(d.session().in_transmission());
  // Simple replies: a READ answers with the 16-byte simple header.
  d.Feed(testing::Request(NBD_CMD_READ, 7, 0, 512));
  std::string out = d.TakeOutput();
  CHECK(out == testing::SimpleReply(0, 7, std::string(512, '\0')));
}

TEST_CASE("tls=on: a plaintext client negotiates and reads as before", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kOn));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_LIST, "") + Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  CHECK(ReplyTypes(d.TakeOutput()) == std::vector<uint32_t>{NBD_REP_SERVER, NBD_REP_ACK,
                                                            NBD_REP_INFO, NBD_REP_INFO,
                                                            NBD_REP_ACK});
  CHECK(d.session().in_transmission());
}

TEST_CASE("a failed TLS handshake closes the session", "[nbd][tls]") {
  Fixture f;
  SessionDriver d(f.catalog, WithTls(TlsMode::kRequire));
  d.TakeOutput();
  d.Feed(kFixed + Option(NBD_OPT_STARTTLS, ""));
  d.TakeOutput();
  REQUIRE(d.session().WantsTls());
  d.session().OnOutputError();
  CHECK(d.session().Finished());
  CHECK(!d.session().WantsTls());
}

TEST_CASE("tls modes parse from their config names", "[nbd][tls]") {
  CHECK(ParseTlsMode("off").value() == TlsMode::kOff);
  CHECK(ParseTlsMode("on").value() == TlsMode::kOn);
  CHECK(ParseTlsMode("require").value() == TlsMode::kRequire);
  CHECK(!ParseTlsMode("yes").ok());
  CHECK(TlsModeName(TlsMode::kRequire) == "require");
}

}  // namespace
}  // namespace portal::nbd
