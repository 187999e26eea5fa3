// LatencyHistogram: an HDR-style log-linear histogram of non-negative values
// (nanoseconds here). Values below 2^kSubBits are counted exactly; above, each power of
// two is split into 2^(kSubBits-1) equal buckets, so a reported value is within 1/64
// (1.6%) of the true one, always rounded up to its bucket's upper bound, and never above
// the true maximum. Fixed size (~4 K counters, 30 KiB), constant-time Record.
//
// Not thread-safe; merge per-thread histograms with Merge.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace portal::trace {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;                       // 128 sub-buckets
  static constexpr uint64_t kSubCount = 1ull << kSubBits;  // exact below this
  static constexpr uint64_t kHalf = kSubCount / 2;
  static constexpr int kExponents = 64 - kSubBits + 1;
  static constexpr size_t kBuckets = kSubCount + (kExponents - 1) * kHalf;

  void Record(uint64_t value);
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }
  // The smallest recorded bucket bound below which at least `q` (0..1] of the values
  // lie; clamped to [min, max]. 0 when empty. Monotonic in q.
  uint64_t Percentile(double q) const;

  // Bucket arithmetic (exposed for tests).
  static size_t BucketOf(uint64_t value);
  static uint64_t UpperBound(size_t bucket);  // largest value mapping to `bucket`

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  unsigned __int128 sum_ = 0;
};

}  // namespace portal::trace
