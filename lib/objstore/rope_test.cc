#include "objstore/rope.h"

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

namespace portal::objstore {
namespace {

TEST_CASE("rope reads any range as the joined pieces would", "[objstore][property]") {
  rc::prop("random pieces and ranges", [] {
    auto parts = *rc::gen::container<std::vector<std::string>>(rc::gen::arbitrary<std::string>());
    Rope rope;
    std::string joined;
    auto whole = std::make_shared<const std::string>("0123456789abcdef");
    for (const auto& p : parts) {
      rope.Append(std::make_shared<const std::string>(p));
      joined += p;
      // Two adjacent pieces of one owner merge into one.
      rope.Append(whole, std::string_view(*whole).substr(0, 4));
      rope.Append(whole, std::string_view(*whole).substr(4, 6));
      joined += whole->substr(0, 10);
    }
    RC_ASSERT(rope.size() == joined.size());
    RC_ASSERT(rope.Flatten() == joined);
    const uint64_t off = *rc::gen::inRange<uint64_t>(0, joined.size() + 2);
    const uint64_t n = *rc::gen::inRange<uint64_t>(0, joined.size() + 2);
    RC_ASSERT(rope.Read(off, n) == (off < joined.size() ? joined.substr(off, n) : ""));
  });
}

TEST_CASE("rope merges contiguous pieces of one owner only", "[objstore]") {
  auto a = std::make_shared<const std::string>("abcdef");
  auto b = std::make_shared<const std::string>("ghijkl");
  Rope rope;
  rope.Append(a, std::string_view(*a).substr(0, 2));
  rope.Append(a, std::string_view(*a).substr(2, 2));  // contiguous: merged
  rope.Append(a, std::string_view(*a).substr(5, 1));  // a gap: a new piece
  rope.Append(b, std::string_view(*b));
  CHECK(rope.pieces().size() == 3);
  CHECK(rope.Flatten() == "abcdfghijkl");
  CHECK(a.use_count() == 3);  // two pieces hold it
}

TEST_CASE("a rope of one string gives it back without a copy, unless shared", "[objstore]") {
  std::string s(3 << 20, 'x');
  const char* storage = s.data();
  Rope whole(std::move(s));
  CHECK(whole.is_one_string());
  CHECK(whole.size() == (3u << 20));
  {
    const Rope copy = whole;  // shares the string: flattening must copy
    std::string joined = Rope(copy).Flatten();
    CHECK(joined.data() != storage);
    std::string from_shared = Rope(whole).Flatten();
    CHECK(from_shared.data() != storage);
    CHECK(from_shared == joined);
  }
  std::string back = std::move(whole).Flatten();
  CHECK(back.data() == storage);
  CHECK(whole.empty());  // NOLINT(bugprone-use-after-move): left empty, as documented

  Rope appended(std::string("abc"));
  appended.Append(std::make_shared<const std::string>("def"));
  CHECK_FALSE(appended.is_one_string());
  CHECK(std::move(appended).Flatten() == "abcdef");
}

}  // namespace
}  // namespace portal::objstore
