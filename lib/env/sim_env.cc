#include "env/sim_env.h"

#include "util/assert.h"

namespace portal {
namespace {

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Prng::Prng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = SplitMix64(&x);
}

uint64_t Prng::Next() {
  uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

SimEnv::SimEnv(Options options)
    : options_(options),
      sched_rng_(options.seed ^ 0x5ced5ced5ced5cedULL),
      user_rng_(options.seed) {}

uint64_t SimEnv::NowNanos() {
  std::lock_guard lock(mu_);
  return now_;
}

int64_t SimEnv::WallNanos() {
  std::lock_guard lock(mu_);
  return options_.wall_start_nanos + static_cast<int64_t>(now_);
}

void SimEnv::Post(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  ready_.push_back(std::move(fn));
}

void SimEnv::PostAfter(uint64_t delay_ns, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  uint64_t at = delay_ns > UINT64_MAX - now_ ? UINT64_MAX : now_ + delay_ns;
  timers_.push(Timer{at, seq_++, std::move(fn)});
}

uint64_t SimEnv::RandomU64() {
  std::lock_guard lock(mu_);
  return user_rng_.Next();
}

std::function<void()> SimEnv::TakeNextLocked(bool allow_time_jump, uint64_t limit) {
  // Timers that are due join the ready work first, in (time, seq) order.
  while (!timers_.empty() && timers_.top().at <= now_) {
    ready_.push_back(std::move(const_cast<Timer&>(timers_.top()).fn));
    timers_.pop();
  }
  if (ready_.empty() && allow_time_jump && !timers_.empty() && timers_.top().at <= limit) {
    now_ = timers_.top().at;
    while (!timers_.empty() && timers_.top().at <= now_) {
      ready_.push_back(std::move(const_cast<Timer&>(timers_.top()).fn));
      timers_.pop();
    }
  }
  if (ready_.empty()) return nullptr;
  size_t pick = 0;
  if (options_.shuffle_ready && ready_.size() > 1) pick = sched_rng_.Below(ready_.size());
  std::function<void()> fn = std::move(ready_[pick]);
  ready_.erase(ready_.begin() + static_cast<std::ptrdiff_t>(pick));
  return fn;
}

bool SimEnv::RunOne() {
  std::function<void()> fn;
  {
    std::lock_guard lock(mu_);
    fn = TakeNextLocked(true, UINT64_MAX);
    if (!fn) return false;
    ++steps_;
  }
  fn();
  return true;
}

uint64_t SimEnv::RunUntilIdle(uint64_t max_steps) {
  uint64_t n = 0;
  while (n < max_steps && RunOne()) ++n;
  return n;
}

bool SimEnv::RunUntil(const std::function<bool()>& pred, uint64_t max_steps) {
  for (uint64_t n = 0; n < max_steps; ++n) {
    if (pred()) return true;
    if (!RunOne()) return pred();
  }
  return pred();
}

void SimEnv::AdvanceBy(uint64_t ns) {
  uint64_t limit;
  {
    std::lock_guard lock(mu_);
    limit = now_ + ns;
  }
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      fn = TakeNextLocked(true, limit);
      if (!fn) {
        if (now_ < limit) now_ = limit;
        return;
      }
      ++steps_;
    }
    fn();
  }
}

size_t SimEnv::ready_count() {
  std::lock_guard lock(mu_);
  return ready_.size();
}

size_t SimEnv::timer_count() {
  std::lock_guard lock(mu_);
  return timers_.size();
}

void SimEnv::DropAll() {
  std::lock_guard lock(mu_);
  ready_.clear();
  while (!timers_.empty()) timers_.pop();
}

}  // namespace portal
