// Byte-exact tests of the fixed newstyle handshake.
#include "nbd/handshake.h"

#include <catch2/catch.hpp>

#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

using testing::ClientFlags;
using testing::Hex;
using testing::InfoOrGoData;
using testing::MetaData;
using testing::Option;
using testing::OptReply;
using testing::SessionDriver;

constexpr uint64_t kSize = 1 << 20;

struct Fixture : testing::MemoryExport {
  Fixture() : MemoryExport(kSize) {}
};

std::string Greeting() {
  std::string s;
  PutBE64(&s, kNbdMagic);
  PutBE64(&s, kIHaveOpt);
  PutBE16(&s, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  return s;
}

constexpr uint16_t kFlagsPlain = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                                 NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                                 NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE |
                                 NBD_FLAG_SEND_FAST_ZERO;

std::string InfoExport(uint16_t flags) {
  std::string p;
  PutBE16(&p, NBD_INFO_EXPORT);
  PutBE64(&p, kSize);
  PutBE16(&p, flags);
  return p;
}

std::string InfoBlockSize() {
  std::string p;
  PutBE16(&p, NBD_INFO_BLOCK_SIZE);
  PutBE32(&p, 1);
  PutBE32(&p, 4096);
  PutBE32(&p, 32u << 20);
  return p;
}

TEST_CASE("greeting is NBDMAGIC IHAVEOPT with fixed newstyle and no zeroes", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  CHECK(Hex(d.TakeOutput()) == Hex(Greeting()));
  CHECK(Greeting().size() == 18);
}

TEST_CASE("NBD_OPT_GO answers INFO_EXPORT, BLOCK_SIZE and ACK, then transmission", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
         Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  std::string expect = OptReply(NBD_OPT_GO, NBD_REP_INFO, InfoExport(kFlagsPlain)) +
                       OptReply(NBD_OPT_GO, NBD_REP_INFO, InfoBlockSize()) +
                       OptReply(NBD_OPT_GO, NBD_REP_ACK);
  CHECK(Hex(d.TakeOutput()) == Hex(expect));
  CHECK(d.session().in_transmission());
}

TEST_CASE("INFO answers requested NAME and DESCRIPTION and stays in negotiation", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) +
         Option(NBD_OPT_INFO, InfoOrGoData("", {NBD_INFO_NAME, NBD_INFO_DESCRIPTION})));
  std::string name, desc;
  PutBE16(&name, NBD_INFO_NAME);
  name += "portalbd";
  PutBE16(&desc, NBD_INFO_DESCRIPTION);
  desc += "test volume";
  std::string expect = OptReply(NBD_OPT_INFO, NBD_REP_INFO, InfoExport(kFlagsPlain)) +
                       OptReply(NBD_OPT_INFO, NBD_REP_INFO, name) +
                       OptReply(NBD_OPT_INFO, NBD_REP_INFO, desc) +
                       OptReply(NBD_OPT_INFO, NBD_REP_INFO, InfoBlockSize()) +
                       OptReply(NBD_OPT_INFO, NBD_REP_ACK);
  CHECK(Hex(d.TakeOutput()) == Hex(expect));
  CHECK_FALSE(d.session().in_transmission());
}

TEST_CASE("EXPORT_NAME sends size and flags, with or without the 124 zeroes", "[nbd]") {
  Fixture f;
  for (bool no_zeroes : {true, false}) {
    SessionDriver d(f.catalog);
    d.TakeOutput();
    d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0)) +
           Option(NBD_OPT_EXPORT_NAME, "portalbd"));
    std::string expect;
    PutBE64(&expect, kSize);
    PutBE16(&expect, kFlagsPlain);
    if (!no_zeroes) expect.append(124, '\0');
    CHECK(Hex(d.TakeOutput()) == Hex(expect));
    CHECK(d.session().in_transmission());
  }
}

TEST_CASE("unknown client flags close the connection", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | 0x80));
  CHECK(d.session().Finished());
  CHECK(d.TakeOutput().empty());
  CHECK(d.session().InputSpace().empty());
}

TEST_CASE("unknown options get ERR_UNSUP and negotiation continues", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(42, "xyz") +
         Option(NBD_OPT_STARTTLS, ""));
  std::string out = d.TakeOutput();
  CHECK(out == OptReply(42, NBD_REP_ERR_UNSUP, "option 42 is not supported") +
                   OptReply(NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, "option 5 is not supported"));
  d.Feed(Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  CHECK(d.session().in_transmission());
}

TEST_CASE("LIST replies one SERVER per export, then ACK, data is refused", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(NBD_OPT_LIST, "") +
         Option(NBD_OPT_LIST, "x"));
  std::string server;
  PutBE32(&server, 8);
  server += "portalbd";
  server += "test volume";
  CHECK(Hex(d.TakeOutput()) ==
        Hex(OptReply(NBD_OPT_LIST, NBD_REP_SERVER, server) + OptReply(NBD_OPT_LIST, NBD_REP_ACK) +
            OptReply(NBD_OPT_LIST, NBD_REP_ERR_INVALID, "LIST takes no data")));
}

TEST_CASE("GO to an unknown export gets ERR_UNKNOWN, EXPORT_NAME to one hangs up", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(NBD_OPT_GO, InfoOrGoData("nope")));
  CHECK(d.TakeOutput() ==
        OptReply(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, "no export named 'nope'"));
  d.Feed(Option(NBD_OPT_EXPORT_NAME, "nope"));
  CHECK(d.session().Finished());
}

TEST_CASE("meta contexts need structured replies, SET selects base:allocation", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) +
         Option(NBD_OPT_SET_META_CONTEXT, MetaData("portalbd", {"base:allocation"})));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID,
                                   "negotiate structured replies first"));
  d.Feed(Option(NBD_OPT_STRUCTURED_REPLY, ""));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));

  std::string ctx0, ctx1;
  PutBE32(&ctx0, 0);
  ctx0 += "base:allocation";
  PutBE32(&ctx1, 1);
  ctx1 += "base:allocation";
  // LIST with the "base:" wildcard, with no query, and with an unknown namespace.
  d.Feed(Option(NBD_OPT_LIST_META_CONTEXT, MetaData("portalbd", {"base:"})) +
         Option(NBD_OPT_LIST_META_CONTEXT, MetaData("portalbd", {})) +
         Option(NBD_OPT_LIST_META_CONTEXT, MetaData("portalbd", {"qemu:dirty-bitmap:x"})));
  CHECK(Hex(d.TakeOutput()) ==
        Hex(OptReply(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT, ctx0) +
            OptReply(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK) +
            OptReply(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT, ctx0) +
            OptReply(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK) +
            OptReply(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK)));
  // Malformed: a query length running past the option.
  std::string bad = MetaData("portalbd", {"base:allocation"});
  bad[bad.size() - 16] = 0x7f;
  d.Feed(Option(NBD_OPT_SET_META_CONTEXT, bad));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID,
                                   "malformed meta context request"));
  d.Feed(Option(NBD_OPT_SET_META_CONTEXT, MetaData("portalbd", {"base:allocation"})));
  CHECK(Hex(d.TakeOutput()) ==
        Hex(OptReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, ctx1) +
            OptReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK)));
  // GO after structured replies: SEND_DF appears.
  d.Feed(Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  std::string out = d.TakeOutput();
  CHECK(out.substr(0, 32) ==
        OptReply(NBD_OPT_GO, NBD_REP_INFO, InfoExport(kFlagsPlain | NBD_FLAG_SEND_DF)));
  CHECK(d.session().in_transmission());
}

TEST_CASE("oversized options are skipped as they stream and answered TOO_BIG", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  std::string big(Handshake::kMaxOptionLength + 1, 'x');
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(NBD_OPT_INFO, big), 1000);
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_INFO, NBD_REP_ERR_TOO_BIG, "option data too large"));
  d.Feed(Option(NBD_OPT_GO, InfoOrGoData("portalbd")));
  CHECK(d.session().in_transmission());
}

TEST_CASE("ABORT is acknowledged and the session ends", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(NBD_OPT_ABORT, ""));
  CHECK(d.TakeOutput() == OptReply(NBD_OPT_ABORT, NBD_REP_ACK));
  CHECK(d.session().Finished());
}

TEST_CASE("malformed INFO/GO lengths get ERR_INVALID", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  std::string data = InfoOrGoData("portalbd", {NBD_INFO_NAME});
  data.pop_back();  // one byte short of the info list
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + Option(NBD_OPT_GO, data) +
         Option(NBD_OPT_GO, "\xff\xff"));
  CHECK(d.TakeOutput() ==
        OptReply(NBD_OPT_GO, NBD_REP_ERR_INVALID, "malformed INFO/GO request") +
            OptReply(NBD_OPT_GO, NBD_REP_ERR_INVALID, "malformed INFO/GO request"));
  CHECK_FALSE(d.session().Finished());
}

TEST_CASE("a bad option magic closes the connection", "[nbd]") {
  Fixture f;
  SessionDriver d(f.catalog);
  d.TakeOutput();
  std::string opt = Option(NBD_OPT_LIST, "");
  opt[0] ^= 1;
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + opt);
  CHECK(d.session().Finished());
}

}  // namespace
}  // namespace portal::nbd
