#include "nbd/inflight_budget.h"

#include <algorithm>
#include <utility>

#include "util/assert.h"

namespace portal::nbd {

InflightBudget::Lease& InflightBudget::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Reset();
    budget_ = o.budget_;
    bytes_ = o.bytes_;
    o.budget_ = nullptr;
  }
  return *this;
}

void InflightBudget::Lease::Reset() {
  if (budget_ != nullptr) std::exchange(budget_, nullptr)->Give(bytes_);
}

InflightBudget::Lease InflightBudget::TryTake(uint64_t bytes, std::function<void()> wake,
                                              bool* taken) {
  std::lock_guard lock(mu_);
  if (used_ == 0 || (used_ + bytes <= max_bytes_ && bytes <= max_bytes_)) {
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    *taken = true;
    return Lease(this, bytes);
  }
  *taken = false;
  wake_.push_back(std::move(wake));
  return Lease();
}

void InflightBudget::Give(uint64_t bytes) {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mu_);
    PORTAL_ASSERT(bytes <= used_, "gave back more than was taken");
    used_ -= bytes;
    // Everyone waiting tries again: sizes differ, so which ones fit now is theirs to find.
    wake.swap(wake_);
  }
  for (auto& w : wake) w();
}

uint64_t InflightBudget::used_bytes() const {
  std::lock_guard lock(mu_);
  return used_;
}

size_t InflightBudget::waiters() const {
  std::lock_guard lock(mu_);
  return wake_.size();
}

uint64_t InflightBudget::peak_bytes() const {
  std::lock_guard lock(mu_);
  return peak_;
}

}  // namespace portal::nbd
