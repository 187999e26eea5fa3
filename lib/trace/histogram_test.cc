#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "trace/histogram.h"

namespace portal::trace {
namespace {

TEST_CASE("histogram buckets are exact below 128 and within 1/64 above", "[trace]") {
  for (uint64_t v = 0; v < 128; ++v) {
    CHECK(LatencyHistogram::UpperBound(LatencyHistogram::BucketOf(v)) == v);
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = rng() >> (rng() % 64);
    size_t b = LatencyHistogram::BucketOf(v);
    REQUIRE(b < LatencyHistogram::kBuckets);
    uint64_t up = LatencyHistogram::UpperBound(b);
    REQUIRE(up >= v);
    REQUIRE(static_cast<double>(up - v) <= static_cast<double>(v) / 64.0 + 1);
    if (b > 0) REQUIRE(LatencyHistogram::UpperBound(b - 1) < v);  // buckets are contiguous
  }
  CHECK(LatencyHistogram::BucketOf(UINT64_MAX) == LatencyHistogram::kBuckets - 1);
  CHECK(LatencyHistogram::UpperBound(LatencyHistogram::kBuckets - 1) == UINT64_MAX);
}

TEST_CASE("histogram percentiles track sorted samples and are ordered", "[trace]") {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(11.0, 1.5);  // ~60 us median, long tail
  LatencyHistogram h;
  std::vector<uint64_t> samples;
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = static_cast<uint64_t>(dist(rng));
    samples.push_back(v);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  CHECK(h.count() == samples.size());
  CHECK(h.min() == samples.front());
  CHECK(h.max() == samples.back());
  uint64_t prev = 0;
  for (double q : {0.5, 0.9, 0.99, 0.999, 1.0}) {
    uint64_t exact = samples[static_cast<size_t>(std::ceil(q * samples.size())) - 1];
    uint64_t got = h.Percentile(q);
    INFO("q=" << q << " exact=" << exact << " got=" << got);
    CHECK(got >= exact);
    CHECK(static_cast<double>(got) <= static_cast<double>(exact) * (1 + 1.0 / 64) + 1);
    CHECK(got >= prev);
    prev = got;
  }
  CHECK(h.Percentile(1.0) == h.max());
}

TEST_CASE("histogram edge cases and merge", "[trace]") {
  LatencyHistogram empty;
  CHECK(empty.Percentile(0.5) == 0);
  CHECK(empty.max() == 0);
  CHECK(empty.mean() == 0);
  LatencyHistogram one;
  one.Record(1'000'003);
  CHECK(one.Percentile(0.5) == 1'000'003);  // clamped to the only value
  CHECK(one.Percentile(0.0) == 1'000'003);
  LatencyHistogram a, b;
  for (int i = 1; i <= 100; ++i) a.Record(i);
  for (int i = 101; i <= 200; ++i) b.Record(i);
  a.Merge(b);
  CHECK(a.count() == 200);
  CHECK(a.min() == 1);
  CHECK(a.max() == 200);
  CHECK(a.mean() == Approx(100.5));
  CHECK(a.Percentile(0.5) == 100);
}

}  // namespace
}  // namespace portal::trace
