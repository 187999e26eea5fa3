// Env: the seam for everything non-deterministic: time, timers, randomness and the
// scheduling of work. Production uses RealEnv (threads, steady clock, asio timers);
// the simulator (dst/) uses a single-threaded, seeded scheduler with simulated time, and
// runs exactly the same library code.
//
// Rules for code in lib/:
// - never call std::chrono clocks, sleep, std::thread, rand() or random_device directly;
// - never block the executor: blocking calls (file I/O, fsync, SQLite) go through
//   RunBlocking (async.h);
// - coroutines suspended on an Env awaitable resume on the Env's executor.
//
// All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>

namespace portal {

class Env {
 public:
  virtual ~Env() = default;

  // Monotonic nanoseconds from an arbitrary origin.
  virtual uint64_t NowNanos() = 0;
  // Nanoseconds since the Unix epoch, for timestamps stored in objects and shown to users.
  virtual int64_t WallNanos() = 0;

  // Runs `fn` soon on the executor. Never runs it inline.
  virtual void Post(std::function<void()> fn) = 0;
  // Runs `fn` on the executor no earlier than `delay_ns` from now. Any delay is valid: one
  // too long for the clock (RealEnv: 2^62 ns and more) never fires early.
  virtual void PostAfter(uint64_t delay_ns, std::function<void()> fn) = 0;
  // Runs `fn` where it may block (a thread pool in production). `fn` must not resume
  // coroutines itself: hand results back with Post.
  virtual void PostBlocking(std::function<void()> fn) = 0;

  // A uniformly distributed 64-bit value.
  virtual uint64_t RandomU64() = 0;

  // A value in [0, n), n > 0.
  uint64_t RandomBelow(uint64_t n) { return RandomU64() % n; }
};

constexpr uint64_t kNanosPerMicro = 1000;
constexpr uint64_t kNanosPerMilli = 1000 * 1000;
constexpr uint64_t kNanosPerSecond = 1000 * 1000 * 1000;

// Milliseconds to nanoseconds for a configured duration, saturating at UINT64_MAX (as good
// as never) instead of wrapping to a short one.
constexpr uint64_t MillisToNanos(uint64_t ms) {
  return ms > UINT64_MAX / kNanosPerMilli ? UINT64_MAX : ms * kNanosPerMilli;
}
// a + b, saturating at UINT64_MAX: a deadline past the clock's end is never reached.
constexpr uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

}  // namespace portal
