// SimEnv: a single-threaded, seeded Env with simulated time.
//
// Post()ed work goes to a ready queue; PostAfter() to a timer heap ordered by (time,
// sequence). Run*() executes ready work and, when none is left, jumps simulated time to
// the next timer: hours of backoff run in microseconds. With `shuffle_ready` the next
// ready item is drawn at random (seeded), which reorders concurrent work the way real
// threads would, yet one seed always replays the same schedule.
//
// Random numbers come from our own PRNG (SplitMix64 seeding xoshiro256**), not from
// std:: distributions, whose output differs between standard libraries.
//
// Thread-safety: every method may be called from any thread, but Run*() must only be
// called from one thread at a time; work always runs on the thread calling Run*().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

#include "env/env.h"

namespace portal {

// xoshiro256** seeded by SplitMix64: small, fast, identical everywhere.
class Prng {
 public:
  explicit Prng(uint64_t seed);
  uint64_t Next();
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  // True with probability num/den.
  bool Chance(uint64_t num, uint64_t den) { return Below(den) < num; }

 private:
  uint64_t s_[4];
};

class SimEnv final : public Env {
 public:
  struct Options {
    uint64_t seed = 1;
    bool shuffle_ready = false;
    int64_t wall_start_nanos = 1767225600LL * 1000000000LL;  // 2026-01-01T00:00:00Z
  };
  explicit SimEnv(Options options);
  SimEnv() : SimEnv(Options{}) {}

  uint64_t NowNanos() override;
  int64_t WallNanos() override;
  void Post(std::function<void()> fn) override;
  void PostAfter(uint64_t delay_ns, std::function<void()> fn) override;
  void PostBlocking(std::function<void()> fn) override { Post(std::move(fn)); }
  uint64_t RandomU64() override;

  // Runs one ready item, or advances time to the next timer and runs it. False if idle.
  bool RunOne();
  // Runs until nothing is ready and no timer is pending. Returns the steps taken.
  uint64_t RunUntilIdle(uint64_t max_steps = UINT64_MAX);
  // Runs until pred() is true (checked between steps). False if the env went idle or
  // max_steps passed first.
  bool RunUntil(const std::function<bool()>& pred, uint64_t max_steps = UINT64_MAX);
  // Runs ready work and timers due up to now + ns, then sets the clock to now + ns.
  void AdvanceBy(uint64_t ns);

  size_t ready_count();
  size_t timer_count();
  uint64_t steps() const { return steps_; }
  // Drops all pending work (simulated crash of everything scheduled on this env).
  void DropAll();

 private:
  struct Timer {
    uint64_t at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Timer& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  std::function<void()> TakeNextLocked(bool allow_time_jump, uint64_t limit);

  Options options_;
  std::mutex mu_;
  uint64_t now_ = 0;
  uint64_t seq_ = 0;
  uint64_t steps_ = 0;
  std::deque<std::function<void()>> ready_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  Prng sched_rng_;
  Prng user_rng_;
};

}  // namespace portal
