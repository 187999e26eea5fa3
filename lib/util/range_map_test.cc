#include "util/range_map.h"

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <vector>

namespace portal {
namespace {

// A value with an offset, so slicing is observable.
struct Val {
  uint32_t tag = 0;
  uint64_t off = 0;
  Val Slice(uint64_t skip) const { return {tag, off + skip}; }
  bool Continues(uint64_t len, const Val& n) const { return n.tag == tag && n.off == off + len; }
};

// Expands the map into a per-key model: (tag, off) or (0, 0) when unmapped.
std::vector<std::pair<uint32_t, uint64_t>> Expand(const RangeMap<Val>& m, uint64_t n) {
  std::vector<std::pair<uint32_t, uint64_t>> out(n, {0, 0});
  m.ForEach(0, n, [&](uint64_t b, uint64_t e, const Val& v) {
    for (uint64_t k = b; k < e; ++k) out[k] = {v.tag, v.off + (k - b)};
    return true;
  });
  return out;
}

TEST_CASE("RangeMap assign splits and slices what it cuts", "[util]") {
  RangeMap<Val> m;
  m.Assign(0, 10, {1, 100});
  m.Assign(3, 5, {2, 0});
  auto e = Expand(m, 10);
  CHECK(e[2] == std::make_pair(1u, uint64_t{102}));
  CHECK(e[3] == std::make_pair(2u, uint64_t{0}));
  CHECK(e[5] == std::make_pair(1u, uint64_t{105}));
  CHECK(m.size() == 3);
  m.Erase(0, 10);
  CHECK(m.empty());
}

TEST_CASE("RangeMap merges continuing neighbours", "[util]") {
  RangeMap<Val> m;
  m.Assign(0, 4, {1, 0});
  m.Assign(4, 8, {1, 4});
  CHECK(m.size() == 1);
  m.Assign(8, 9, {1, 100});  // does not continue
  CHECK(m.size() == 2);
}

TEST_CASE("RangeMap huge ranges cost one entry", "[util]") {
  RangeMap<Val> m;
  m.Assign(0, uint64_t{1} << 60, {7, 0});
  m.Assign(uint64_t{1} << 59, (uint64_t{1} << 59) + 1, {8, 0});
  CHECK(m.size() == 3);
  const auto* f = m.Find((uint64_t{1} << 59) + 5);
  REQUIRE(f != nullptr);
  CHECK(f->second.value.off == (uint64_t{1} << 59) + 1);
}

TEST_CASE("RangeMap matches a per-key model", "[util][property]") {
  rc::prop("random assign/erase sequences", [] {
    constexpr uint64_t kKeys = 64;
    RangeMap<Val> m;
    std::vector<std::pair<uint32_t, uint64_t>> model(kKeys, {0, 0});
    auto ops = *rc::gen::container<std::vector<std::tuple<bool, uint64_t, uint64_t, uint32_t>>>(
        rc::gen::tuple(rc::gen::arbitrary<bool>(), rc::gen::inRange<uint64_t>(0, kKeys),
                       rc::gen::inRange<uint64_t>(0, kKeys), rc::gen::inRange<uint32_t>(1, 4)));
    for (auto [assign, a, b, tag] : ops) {
      uint64_t lo = std::min(a, b), hi = std::max(a, b);
      if (assign) {
        m.Assign(lo, hi, {tag, 1000});
        for (uint64_t k = lo; k < hi; ++k) model[k] = {tag, 1000 + (k - lo)};
      } else {
        m.Erase(lo, hi);
        for (uint64_t k = lo; k < hi; ++k) model[k] = {0, 0};
      }
    }
    RC_ASSERT(Expand(m, kKeys) == model);
    // Invariant: disjoint, ordered, non-empty ranges.
    uint64_t last_end = 0;
    for (const auto& [b, r] : m.map()) {
      RC_ASSERT(b >= last_end);
      RC_ASSERT(r.end > b);
      last_end = r.end;
    }
  });
}

}  // namespace
}  // namespace portal
