#include "util/coding.h"

#include <catch2/catch.hpp>

#include "util/status.h"

namespace portal {
namespace {

TEST_CASE("big-endian and varint round trips", "[util]") {
  std::string s;
  PutBE16(&s, 0x1234);
  PutBE32(&s, 0x89abcdef);
  PutBE64(&s, 0x0102030405060708ULL);
  PutVarint64(&s, 300);
  PutVarint64(&s, UINT64_MAX);
  PutLengthPrefixed(&s, "hello");
  CHECK(static_cast<uint8_t>(s[0]) == 0x12);
  ByteReader r(s);
  uint16_t a;
  uint32_t b;
  uint64_t c, d, e;
  std::string_view f;
  REQUIRE(r.GetBE16(&a));
  REQUIRE(r.GetBE32(&b));
  REQUIRE(r.GetBE64(&c));
  REQUIRE(r.GetVarint64(&d));
  REQUIRE(r.GetVarint64(&e));
  REQUIRE(r.GetLengthPrefixed(&f));
  CHECK(a == 0x1234);
  CHECK(b == 0x89abcdef);
  CHECK(c == 0x0102030405060708ULL);
  CHECK(d == 300);
  CHECK(e == UINT64_MAX);
  CHECK(f == "hello");
  CHECK(r.empty());
}

TEST_CASE("readers refuse truncated and overlong input", "[util]") {
  ByteReader r(std::string_view("\x01\x02", 2));
  uint32_t v;
  CHECK_FALSE(r.GetBE32(&v));
  CHECK(r.remaining() == 2);  // unchanged
  std::string bad(11, '\xff');
  ByteReader r2(bad);
  uint64_t x;
  CHECK_FALSE(r2.GetVarint64(&x));
  std::string lp;
  PutVarint64(&lp, 100);
  lp += "short";
  ByteReader r3(lp);
  std::string_view out;
  CHECK_FALSE(r3.GetLengthPrefixed(&out));
  CHECK(r3.remaining() == lp.size());
}

TEST_CASE("Status and Result carry codes and context", "[util]") {
  Status s = Status::NotFound("seg/1").WithContext("open");
  CHECK(s.ToString() == "NotFound: open: seg/1");
  CHECK_FALSE(s.retryable());
  CHECK(Status::Unavailable("503").retryable());
  Result<int> r = 5;
  CHECK(*r == 5);
  Result<int> e = Status::Corruption("bad");
  CHECK(e.status().IsCorruption());
}

}  // namespace
}  // namespace portal
