#include "env/real_env.h"

#include <algorithm>
#include <chrono>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>

namespace portal {

struct RealEnv::WorkGuard {
  explicit WorkGuard(asio::io_context& io) : guard(asio::make_work_guard(io)) {}
  asio::executor_work_guard<asio::io_context::executor_type> guard;
};

RealEnv::RealEnv(Options options)
    : options_(options),
      io_(std::make_unique<asio::io_context>()),
      work_(std::make_unique<WorkGuard>(*io_)),
      blocking_(std::make_unique<asio::thread_pool>(options.blocking_threads)) {
  std::random_device rd;
  rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  if (options_.executor_threads == 0) {
    options_.executor_threads = std::max(1u, std::thread::hardware_concurrency());
  }
}

RealEnv::~RealEnv() { Stop(); }

void RealEnv::Start() {
  std::lock_guard lock(mu_);
  if (started_ || stopped_) return;
  started_ = true;
  for (unsigned i = 0; i < options_.executor_threads; ++i) {
    threads_.emplace_back([this] { io_->run(); });
  }
}

void RealEnv::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  blocking_->join();
  work_.reset();
  io_->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

uint64_t RealEnv::NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t RealEnv::WallNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RealEnv::Post(std::function<void()> fn) { asio::post(*io_, std::move(fn)); }

void RealEnv::PostAfter(uint64_t delay_ns, std::function<void()> fn) {
  // std::chrono::nanoseconds is signed: a delay of 2^63 ns or more wrapped to a negative
  // one that fired at once. 2^62 ns (146 years) is as good as never, and asio saturates
  // now() + 2^62 ns at the clock's maximum rather than wrapping.
  constexpr uint64_t kMaxDelayNs = uint64_t{1} << 62;
  const auto delay =
      std::chrono::nanoseconds(static_cast<int64_t>(std::min(delay_ns, kMaxDelayNs)));
  auto timer = std::make_shared<asio::steady_timer>(*io_, delay);
  timer->async_wait([timer, fn = std::move(fn)](const std::error_code&) { fn(); });
}

void RealEnv::PostBlocking(std::function<void()> fn) { asio::post(*blocking_, std::move(fn)); }

uint64_t RealEnv::RandomU64() {
  std::lock_guard lock(rng_mu_);
  return rng_();
}

}  // namespace portal
