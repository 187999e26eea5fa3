// RealEnv: the production Env. An asio::io_context run by a fixed pool of executor
// threads, asio timers for PostAfter, a separate pool for blocking work, the steady and
// system clocks, and a mutex-guarded PRNG seeded from the OS.
//
// The NBD server and the control socket run their sockets on the same io_context
// (io_context()), so network handlers and volume coroutines share one set of threads.
#pragma once

#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "env/env.h"

namespace asio {
class io_context;
class thread_pool;
}  // namespace asio

namespace portal {

class RealEnv final : public Env {
 public:
  struct Options {
    unsigned executor_threads = 0;  // 0: std::thread::hardware_concurrency()
    unsigned blocking_threads = 8;
  };

  explicit RealEnv(Options options);
  RealEnv() : RealEnv(Options{}) {}
  ~RealEnv() override;  // Stop()s
  RealEnv(const RealEnv&) = delete;
  RealEnv& operator=(const RealEnv&) = delete;

  // Starts the executor threads. Idempotent.
  void Start();
  // Stops the executor (pending handlers are dropped, not run) and joins all threads.
  // Call after the work you care about has drained. Idempotent.
  void Stop();

  asio::io_context& io_context() { return *io_; }

  uint64_t NowNanos() override;
  int64_t WallNanos() override;
  void Post(std::function<void()> fn) override;
  void PostAfter(uint64_t delay_ns, std::function<void()> fn) override;
  void PostBlocking(std::function<void()> fn) override;
  uint64_t RandomU64() override;

 private:
  struct WorkGuard;
  Options options_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<WorkGuard> work_;
  std::unique_ptr<asio::thread_pool> blocking_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace portal
