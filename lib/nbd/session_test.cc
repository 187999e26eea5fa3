// Byte-exact tests of the transmission phase, bounds, and failure at every I/O step.
#include "nbd/session.h"

#include <catch2/catch.hpp>

#include <set>

#include "env/async.h"
#include "env/sim_env.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::nbd {
namespace {

using testing::Chunk;
using testing::ClientFlags;
using testing::Hex;
using testing::InfoOrGoData;
using testing::MetaData;
using testing::Option;
using testing::Request;
using testing::SessionDriver;
using testing::SimpleReply;

constexpr uint64_t kSize = 1 << 20;

// Delegates to a MemoryVolume after yielding to a SimEnv, so completions arrive later
// and through Host::RunInContext; call number `fail_call` (1-based) fails with EIO.
class YieldingDevice final : public device::BlockDevice {
 public:
  YieldingDevice(SimEnv& env, uint64_t size) : env_(env), inner_(size, 4096) {}
  int fail_call = 0;
  int calls = 0;

  uint64_t size_bytes() const override { return inner_.size_bytes(); }
  uint32_t block_size() const override { return 4096; }
  Task<Status> Read(uint64_t o, std::span<uint8_t> out,
                    std::vector<device::ByteRange>* z) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.Read(o, out, z);
  }
  Task<Status> Write(uint64_t o, std::span<const uint8_t> d, device::WriteFlags f) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.Write(o, d, f);
  }
  Task<Status> Flush() override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.Flush();
  }
  Task<Status> Trim(uint64_t o, uint64_t l, device::WriteFlags f) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.Trim(o, l, f);
  }
  Task<Status> WriteZeroes(uint64_t o, uint64_t l, device::ZeroFlags f) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.WriteZeroes(o, l, f);
  }
  Task<Result<std::vector<device::StatusExtent>>> BlockStatus(uint64_t o, uint64_t l,
                                                               uint32_t m) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.BlockStatus(o, l, m);
  }
  Task<Status> Cache(uint64_t o, uint64_t l) override {
    CO_RETURN_IF_ERROR(co_await Step());
    co_return co_await inner_.Cache(o, l);
  }

 private:
  Task<Status> Step() {
    co_await Yield(env_);
    if (++calls == fail_call) co_return Status::IOError("injected");
    co_return Status::Ok();
  }
  SimEnv& env_;
  testing::MemoryVolume inner_;
};

struct Fixture {
  explicit Fixture(bool async = false, uint64_t size = kSize) {
    if (async) {
      yielding = std::make_shared<YieldingDevice>(env, size);
      device = yielding;
    } else {
      device = std::make_shared<testing::MemoryVolume>(size, 4096);
    }
    catalog = std::make_unique<SingleExportCatalog>(
        ExportInfo{"portalbd", "", size, false}, device);
  }
  SimEnv env;
  std::shared_ptr<YieldingDevice> yielding;
  std::shared_ptr<device::BlockDevice> device;
  std::unique_ptr<SingleExportCatalog> catalog;
};

// The client side of a handshake ending in GO; structured replies and base:allocation
// when `structured`.
std::string Negotiate(bool structured) {
  std::string s = ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  if (structured) {
    s += Option(NBD_OPT_STRUCTURED_REPLY, "");
    s += Option(NBD_OPT_SET_META_CONTEXT, MetaData("portalbd", {"base:allocation"}));
  }
  s += Option(NBD_OPT_GO, InfoOrGoData("portalbd"));
  return s;
}

void Attach(SessionDriver& d, bool structured) {
  d.Feed(Negotiate(structured));
  d.TakeOutput();
  REQUIRE(d.session().in_transmission());
}

std::string Bytes(size_t n, char c) { return std::string(n, c); }

std::string OffsetData(uint64_t offset, std::string_view data) {
  std::string p;
  PutBE64(&p, offset);
  p.append(data);
  return p;
}

std::string OffsetHole(uint64_t offset, uint32_t length) {
  std::string p;
  PutBE64(&p, offset);
  PutBE32(&p, length);
  return p;
}

std::string ErrorPayload(uint32_t error, std::string_view msg) {
  std::string p;
  PutBE32(&p, error);
  PutBE16(&p, static_cast<uint16_t>(msg.size()));
  p.append(msg);
  return p;
}

TEST_CASE("simple replies: write, read, flush, trim, zero, cache", "[nbd]") {
  Fixture f;
  SessionDriver d(*f.catalog);
  Attach(d, false);
  std::string data = Bytes(4096, 'a');
  d.Feed(Request(NBD_CMD_WRITE, 1, 0, 4096, 0, data) + Request(NBD_CMD_READ, 2, 0, 4096) +
         Request(NBD_CMD_FLUSH, 3, 0, 0) + Request(NBD_CMD_TRIM, 4, 100, 200) +
         Request(NBD_CMD_WRITE_ZEROES, 5, 1000, 10, NBD_CMD_FLAG_NO_HOLE) +
         Request(NBD_CMD_CACHE, 6, 0, 4096) + Request(NBD_CMD_READ, 7, 0, 4096));
  std::string after = data;
  std::fill(after.begin() + 100, after.begin() + 300, '\0');
  std::fill(after.begin() + 1000, after.begin() + 1010, '\0');
  CHECK(Hex(d.TakeOutput()) ==
        Hex(SimpleReply(0, 1) + SimpleReply(0, 2, data) + SimpleReply(0, 3) +
            SimpleReply(0, 4) + SimpleReply(0, 5) + SimpleReply(0, 6) + SimpleReply(0, 7, after)));
}

TEST_CASE("a large WRITE's payload lands in a recycled buffer and the next header is read alone",
          "[nbd]") {
  Fixture f;
  BufferRecycler recycler(16 << 20);
  const size_t in_bytes = 16 << 10;  // less than a large payload
  SessionDriver d(*f.catalog,
                  Session::Options{.input_buffer_bytes = in_bytes, .recycler = &recycler});
  Attach(d, false);
  const uint32_t big = Session::kDirectPayloadBytes;
  std::string a = Bytes(big, 'a'), b = Bytes(big, 'b'), c = Bytes(4096, 'c');
  const std::string script =
      Request(NBD_CMD_WRITE, 1, 0, big, 0, a) + Request(NBD_CMD_WRITE, 2, big, big, 0, b) +
      Request(NBD_CMD_WRITE, 3, 2 * big, 4096, 0, c) + Request(NBD_CMD_READ, 4, 0, 2 * big) +
      Request(NBD_CMD_READ, 5, 2 * big, 4096);
  // Feed as much as the session offers each time, noting what it offered.
  std::vector<size_t> offered;
  size_t fed = 0;
  while (fed < script.size()) {
    d.RunCompletions();
    auto space = d.session().InputSpace();
    REQUIRE(!space.empty());
    offered.push_back(space.size());
    const size_t n = std::min(space.size(), script.size() - fed);
    std::memcpy(space.data(), script.data() + fed, n);
    d.session().CommitInput(n);
    fed += n;
  }
  // The first read fills the input buffer: the first header and the start of its payload
  // (copied); the rest of the payload is read into its own buffer; then the next header
  // alone, and its payload whole; the next header alone again, a small WRITE's, and its
  // payload; after a small WRITE the input buffer is offered whole again.
  REQUIRE(offered.size() == 7);
  CHECK(offered[0] == in_bytes);
  CHECK(offered[1] == big - (in_bytes - kRequestHeaderSize));
  CHECK(offered[2] == kRequestHeaderSize);
  CHECK(offered[3] == big);
  CHECK(offered[4] == kRequestHeaderSize);
  CHECK(offered[5] == 4096);
  CHECK(offered[6] == in_bytes);
  CHECK(Hex(d.TakeOutput()) == Hex(SimpleReply(0, 1) + SimpleReply(0, 2) + SimpleReply(0, 3) +
                                   SimpleReply(0, 4, a + b) + SimpleReply(0, 5, c)));
  // The device copied the payloads: the first buffer came back and served the second.
  CHECK(recycler.hits() == 1);
  CHECK(recycler.misses() == 1);
  CHECK(recycler.pooled_bytes() == big);
}

TEST_CASE("a kernel session starts in transmission with simple replies and its size can grow",
          "[nbd]") {
  Fixture f(false, 2 * kSize);
  auto exp = *f.catalog->Open("portalbd");
  exp->info.size_bytes = kSize;  // as attached, before a resize
  SessionDriver d(*f.catalog, exp);
  CHECK(d.session().in_transmission());
  CHECK(d.TakeOutput().empty());  // no greeting: the kernel does no handshake
  std::string data = Bytes(4096, 'k');
  d.Feed(Request(NBD_CMD_WRITE, 1, 0, 4096, NBD_CMD_FLAG_FUA, data) +
         Request(NBD_CMD_FLUSH, 2, 0, 0) + Request(NBD_CMD_READ, 3, kSize, 4096));
  CHECK(Hex(d.TakeOutput()) ==
        Hex(SimpleReply(0, 1) + SimpleReply(0, 2) + SimpleReply(NBD_EINVAL, 3)));
  d.session().SetSize(2 * kSize);  // the volume grew
  d.Feed(Request(NBD_CMD_READ, 4, kSize, 4096));
  CHECK(Hex(d.TakeOutput()) == Hex(SimpleReply(0, 4, Bytes(4096, '\0'))));
}

TEST_CASE("a kernel session's shutdown answers only what started", "[nbd]") {
  Fixture f(/*async=*/true);
  auto exp = *f.catalog->Open("portalbd");
  SessionDriver d(*f.catalog, exp, Session::Options{.max_inflight_requests = 1});
  // The first READ runs; the second waits behind the in-flight bound.
  d.Feed(Request(NBD_CMD_READ, 1, 0, 4096) + Request(NBD_CMD_READ, 2, 0, 4096));
  CHECK(d.session().inflight() == 1);
  d.session().Shutdown();
  while (f.env.RunOne()) d.RunCompletions();
  // Request 1 is answered; request 2 is not (an NBD_ESHUTDOWN would fail it in the
  // kernel, which instead resends it on its next connection).
  CHECK(Hex(d.TakeOutput()) == Hex(SimpleReply(0, 1, Bytes(4096, '\0'))));
  CHECK(d.session().Finished());
}

TEST_CASE("structured reads send holes as OFFSET_HOLE, DF as one data chunk", "[nbd]") {
  Fixture f;
  SessionDriver d(*f.catalog);
  Attach(d, true);
  std::string data = Bytes(4096, 'b');
  d.Feed(Request(NBD_CMD_WRITE, 1, 8192, 4096, NBD_CMD_FLAG_FUA, data) +
         Request(NBD_CMD_READ, 2, 0, 16384));
  CHECK(Hex(d.TakeOutput()) ==
        Hex(SimpleReply(0, 1) +
            Chunk(0, NBD_REPLY_TYPE_OFFSET_HOLE, 2, OffsetHole(0, 8192)) +
            Chunk(0, NBD_REPLY_TYPE_OFFSET_DATA, 2, OffsetData(8192, data)) +
            Chunk(0, NBD_REPLY_TYPE_OFFSET_HOLE, 2, OffsetHole(12288, 4096)) +
            Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 2, "")));
  d.Feed(Request(NBD_CMD_READ, 3, 4096, 8192, NBD_CMD_FLAG_DF));
  CHECK(Hex(d.TakeOutput()) ==
        Hex(Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 3,
                  OffsetData(4096, Bytes(4096, '\0') + data))));
  d.Feed(Request(NBD_CMD_READ, 4, 0, 0));
  CHECK(Hex(d.TakeOutput()) == Hex(Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 4, "")));
}

TEST_CASE("block status answers base:allocation extents, REQ_ONE gives one", "[nbd]") {
  Fixture f;
  SessionDriver d(*f.catalog);
  Attach(d, true);
  d.Feed(Request(NBD_CMD_WRITE, 1, 0, 4096, 0, Bytes(4096, 'c')) +
         Request(NBD_CMD_WRITE_ZEROES, 2, 4096, 4096, NBD_CMD_FLAG_NO_HOLE) +
         Request(NBD_CMD_BLOCK_STATUS, 3, 0, kSize) +
         Request(NBD_CMD_BLOCK_STATUS, 4, 0, 2000, NBD_CMD_FLAG_REQ_ONE));
  std::string status;
  PutBE32(&status, 1);  // context id
  PutBE32(&status, 4096);
  PutBE32(&status, 0);
  PutBE32(&status, 4096);
  PutBE32(&status, NBD_STATE_ZERO);
  PutBE32(&status, kSize - 8192);
  PutBE32(&status, NBD_STATE_HOLE | NBD_STATE_ZERO);
  std::string one;
  PutBE32(&one, 1);
  PutBE32(&one, 2000);
  PutBE32(&one, 0);
  CHECK(Hex(d.TakeOutput()) ==
        Hex(SimpleReply(0, 1) + SimpleReply(0, 2) +
            Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 3, status) +
            Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 4, one)));
}

TEST_CASE("invalid requests get the right errors and the stream stays in frame", "[nbd]") {
  for (bool structured : {false, true}) {
    Fixture f;
    SessionDriver d(*f.catalog);
    Attach(d, structured);
    auto err = [&](uint64_t cookie, uint32_t e, std::string_view msg) {
      return structured ? Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie,
                                ErrorPayload(e, msg))
                        : SimpleReply(e, cookie);
    };
    std::string big(static_cast<size_t>(32u << 20) + 1, 'z');
    d.Feed(Request(NBD_CMD_READ, 1, kSize - 10, 20) +            // past the end
               Request(NBD_CMD_WRITE, 2, kSize - 1, 2, 0, "xy") +  // past the end: ENOSPC
               Request(NBD_CMD_WRITE_ZEROES, 3, kSize, 1) +        // ENOSPC
               Request(NBD_CMD_TRIM, 4, kSize, 1) +                // EINVAL
               Request(42, 5, 0, 0) +                              // unknown command
               Request(NBD_CMD_READ, 6, 0, 1, 0x40) +              // unknown flag
               Request(NBD_CMD_READ, 7, 0, 1, NBD_CMD_FLAG_NO_HOLE) +  // flag not for READ
               Request(NBD_CMD_FLUSH, 8, 1, 0) +                   // FLUSH with offset
               Request(NBD_CMD_READ, 9, 0, (32u << 20) + 1) +      // too big to read
               Request(NBD_CMD_WRITE, 10, 0, big.size(), 0, big) +  // too big: drained
               Request(NBD_CMD_READ, 11, 0, 2),
           1 << 20);
    std::string expect =
        err(1, NBD_EINVAL, "invalid request") + err(2, NBD_ENOSPC, "invalid write request") +
        err(3, NBD_ENOSPC, "invalid request") + err(4, NBD_EINVAL, "invalid request") +
        err(5, NBD_EINVAL, "invalid request") + err(6, NBD_EINVAL, "invalid request") +
        err(7, NBD_EINVAL, "invalid request") + err(8, NBD_EINVAL, "invalid request") +
        err(9, structured ? NBD_EOVERFLOW : NBD_EINVAL, "invalid request") +
        err(10, NBD_EINVAL, "invalid write request") +
        (structured ? Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 11,
                            OffsetData(0, std::string(2, '\0')))
                    : SimpleReply(0, 11, std::string(2, '\0')));
    CHECK(Hex(d.TakeOutput()) == Hex(expect));
    CHECK(d.session().in_transmission());
  }
}

TEST_CASE("block status without a context and DF without structured replies are refused",
          "[nbd]") {
  Fixture f;
  SessionDriver d(*f.catalog);
  Attach(d, false);
  d.Feed(Request(NBD_CMD_BLOCK_STATUS, 1, 0, 4096) +
         Request(NBD_CMD_READ, 2, 0, 4096, NBD_CMD_FLAG_DF));
  CHECK(Hex(d.TakeOutput()) == Hex(SimpleReply(NBD_EINVAL, 1) + SimpleReply(NBD_EINVAL, 2)));
}

TEST_CASE("read-only exports refuse writes with EPERM", "[nbd]") {
  auto dev = std::make_shared<testing::MemoryVolume>(kSize, 4096);
  SingleExportCatalog catalog(ExportInfo{"snap", "", kSize, true}, dev);
  SessionDriver d(catalog);
  d.Feed(ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
         Option(NBD_OPT_EXPORT_NAME, "snap"));
  std::string handshake = d.TakeOutput();
  uint16_t flags = LoadBE16(reinterpret_cast<const uint8_t*>(handshake.data()) + 18 + 8);
  CHECK((flags & NBD_FLAG_READ_ONLY) != 0);
  CHECK((flags & NBD_FLAG_SEND_TRIM) == 0);
  d.Feed(Request(NBD_CMD_WRITE, 1, 0, 2, 0, "hi") + Request(NBD_CMD_TRIM, 2, 0, 4096) +
         Request(NBD_CMD_WRITE_ZEROES, 3, 0, 4096) + Request(NBD_CMD_READ, 4, 0, 2));
  CHECK(Hex(d.TakeOutput()) == Hex(SimpleReply(NBD_EPERM, 1) + SimpleReply(NBD_EPERM, 2) +
                                   SimpleReply(NBD_EPERM, 3) +
                                   SimpleReply(0, 4, std::string(2, '\0'))));
}

TEST_CASE("input split at every byte gives identical output", "[nbd]") {
  std::string script = Negotiate(true) + Request(NBD_CMD_WRITE, 1, 10, 5000, 0, Bytes(5000, 'q')) +
                       Request(NBD_CMD_READ, 2, 0, 12000) + Request(NBD_CMD_BLOCK_STATUS, 3, 0, kSize) +
                       Request(NBD_CMD_TRIM, 4, 4096, 4096) + Request(NBD_CMD_READ, 5, 0, 9000);
  std::string reference;
  {
    Fixture f;
    SessionDriver d(*f.catalog);
    d.Feed(script);
    reference = d.TakeOutput();
  }
  for (size_t chunk : {1, 2, 3, 7, 27, 28, 29, 4095}) {
    Fixture f;
    SessionDriver d(*f.catalog);
    CHECK(d.Feed(script, chunk) == script.size());
    CHECK(d.TakeOutput() == reference);
  }
}

TEST_CASE("async completions reply in completion order and respect the in-flight bound",
          "[nbd]") {
  Fixture f(/*async=*/true);
  Session::Options options;
  options.max_inflight_requests = 3;
  SessionDriver d(*f.catalog, options);
  uint64_t max_seen = 0;
  d.SetExtraPump([&] {
    max_seen = std::max(max_seen, d.session().inflight());
    return f.env.RunOne();
  });
  Attach(d, false);
  std::string script;
  for (uint64_t i = 0; i < 10; ++i) {
    script += Request(NBD_CMD_WRITE, 100 + i, i * 4096, 4096, 0, Bytes(4096, char('a' + i)));
  }
  d.Feed(script);
  std::string out = d.TakeOutput();
  CHECK(max_seen <= 3);
  REQUIRE(out.size() == 10 * kSimpleReplyHeaderSize);
  std::set<uint64_t> cookies;
  for (size_t i = 0; i < 10; ++i) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(out.data()) + i * 16;
    CHECK(LoadBE32(p + 4) == 0);
    cookies.insert(LoadBE64(p + 8));
  }
  CHECK(cookies.size() == 10);
  CHECK(*cookies.begin() == 100);
}

TEST_CASE("device errors become EIO replies and other requests proceed", "[nbd]") {
  for (int fail = 1; fail <= 4; ++fail) {
    Fixture f(/*async=*/true);
    f.yielding->fail_call = fail;
    SessionDriver d(*f.catalog);
    d.SetExtraPump([&] { return f.env.RunOne(); });
    Attach(d, true);
    d.Feed(Request(NBD_CMD_WRITE, 1, 0, 3, 0, "abc") + Request(NBD_CMD_FLUSH, 2, 0, 0) +
           Request(NBD_CMD_TRIM, 3, 0, 1) + Request(NBD_CMD_CACHE, 4, 0, 1));
    std::string out = d.TakeOutput();
    // Exactly one error chunk, for the failing request's cookie.
    std::string expect_err = Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, fail,
                                   ErrorPayload(NBD_EIO, "IOError: injected"));
    CHECK(out.find(expect_err) != std::string::npos);
    CHECK(out.size() == 3 * kSimpleReplyHeaderSize + expect_err.size());
  }
}

// A full session script; at step k (an input chunk or an output write) the I/O fails.
// Whatever the step, the session must end cleanly: no crash, no request left behind.
TEST_CASE("an I/O error injected at every step ends the session cleanly", "[nbd]") {
  std::string script = Negotiate(true);
  for (uint64_t i = 0; i < 6; ++i) {
    script += Request(NBD_CMD_WRITE, i, i * 3000, 3000, 0, Bytes(3000, 'w'));
    script += Request(NBD_CMD_READ, 100 + i, 0, 8192);
  }
  script += Request(NBD_CMD_FLUSH, 200, 0, 0) + Request(NBD_CMD_DISC, 201, 0, 0);
  const size_t kChunk = 512;
  size_t steps_total = 0;
  for (size_t k = 0;; ++k) {
    Fixture f(/*async=*/true);
    SessionDriver d(*f.catalog);
    d.SetExtraPump([&] { return f.env.RunOne(); });
    size_t step = 0, fed = 0;
    bool injected = false;
    while (!d.session().Finished() || d.session().HasOutput()) {
      // Output step.
      if (d.session().HasOutput()) {
        if (step++ == k) {
          d.session().OnOutputError();
          injected = true;
        } else {
          d.TakeOutput();
        }
      }
      // Input step.
      auto space = d.session().InputSpace();
      if (!space.empty()) {
        if (step++ == k) {
          d.session().OnInputEof();
          injected = true;
        } else if (fed < script.size()) {
          size_t n = std::min({space.size(), script.size() - fed, kChunk});
          std::memcpy(space.data(), script.data() + fed, n);
          d.session().CommitInput(n);
          fed += n;
        } else {
          d.session().OnInputEof();
        }
      }
      d.RunCompletions();
      REQUIRE(step < 10000);
    }
    CHECK(d.session().inflight() == 0);
    if (!injected) {
      steps_total = step;
      break;
    }
  }
  CHECK(steps_total > 20);  // the script really had many steps to fail at
}

}  // namespace
}  // namespace portal::nbd
