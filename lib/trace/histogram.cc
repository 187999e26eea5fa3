#include "trace/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace portal::trace {

// Layout: buckets [0, 128) hold the values 0..127 exactly. A value v >= 128 with highest
// bit e (7..63) keeps its top 7 bits, sub = v >> (e - 6) in [64, 128), and lands in
// bucket 128 + (e - 7) * 64 + (sub - 64).
size_t LatencyHistogram::BucketOf(uint64_t v) {
  if (v < kSubCount) return static_cast<size_t>(v);
  int e = 63 - std::countl_zero(v);
  int shift = e - (kSubBits - 1);
  uint64_t sub = v >> shift;
  return kSubCount + static_cast<size_t>(e - kSubBits) * kHalf + static_cast<size_t>(sub - kHalf);
}

uint64_t LatencyHistogram::UpperBound(size_t bucket) {
  if (bucket < kSubCount) return bucket;
  size_t k = bucket - kSubCount;
  int e = kSubBits + static_cast<int>(k / kHalf);
  uint64_t sub = kHalf + k % kHalf;
  int shift = e - (kSubBits - 1);
  return ((sub + 1) << shift) - 1;  // wraps to UINT64_MAX for the top bucket, as it should
}

void LatencyHistogram::Record(uint64_t value) {
  ++counts_[BucketOf(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
}

void LatencyHistogram::Merge(const LatencyHistogram& o) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
  count_ += o.count_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  sum_ += o.sum_;
}

uint64_t LatencyHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t target = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  target = std::clamp<uint64_t>(target, 1, count_);
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= target) return std::clamp(UpperBound(b), min(), max_);
  }
  return max_;
}

}  // namespace portal::trace
