// Awaitables and coroutine-aware synchronization built on Env.
//
// Every primitive here wakes waiters by posting them to the Env's executor, never inline,
// so a caller holding its own std::mutex can signal without re-entering waiting code.
// Never hold a std::mutex across co_await; use AsyncMutex where a critical section must
// span a suspension.
//
// Bounds: waiter lists grow only with the number of suspended coroutines, which callers
// bound (per-connection request limits, background job counts).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "env/env.h"
#include "env/task.h"
#include "util/assert.h"

namespace portal {

// co_await Yield(env): resume on the executor, letting other work run first.
inline auto Yield(Env& env) {
  struct Awaiter {
    Env& env;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { env.Post([h] { h.resume(); }); }
    void await_resume() const noexcept {}
  };
  return Awaiter{env};
}

// co_await SleepFor(env, ns): resume on the executor after `ns` of Env time.
inline auto SleepFor(Env& env, uint64_t ns) {
  struct Awaiter {
    Env& env;
    uint64_t ns;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { env.PostAfter(ns, [h] { h.resume(); }); }
    void await_resume() const noexcept {}
  };
  return Awaiter{env, ns};
}

// co_await RunBlocking(env, fn): runs fn() on the blocking pool and resumes on the
// executor with its result. fn is moved into the awaiter; references it holds must
// outlive the await (they do when the caller awaits at once).
template <typename F>
auto RunBlocking(Env& env, F fn) {
  using R = std::invoke_result_t<F&>;
  struct Awaiter {
    Env& env;
    F fn;
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> result;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      env.PostBlocking([this, h] {
        if constexpr (std::is_void_v<R>) {
          fn();
          result.emplace(true);
        } else {
          result.emplace(fn());
        }
        env.Post([h] { h.resume(); });
      });
    }
    R await_resume() {
      if constexpr (!std::is_void_v<R>) return std::move(*result);
    }
  };
  return Awaiter{env, std::move(fn), std::nullopt};
}

// A value produced once by one side and awaited once by the other. Share it through a
// std::shared_ptr when the producer may outlive the awaiting coroutine's frame.
template <typename T>
class Oneshot {
 public:
  explicit Oneshot(Env& env) : env_(env) {}
  Oneshot(const Oneshot&) = delete;
  Oneshot& operator=(const Oneshot&) = delete;

  // Sets the value; the first call wins, later calls are ignored (returns false).
  bool Set(T value) {
    std::coroutine_handle<> waiter;
    {
      std::lock_guard lock(mu_);
      if (value_) return false;
      value_.emplace(std::move(value));
      waiter = std::exchange(waiter_, {});
    }
    if (waiter) env_.Post([waiter] { waiter.resume(); });
    return true;
  }

  bool is_set() const {
    std::lock_guard lock(mu_);
    return value_.has_value();
  }

  // Awaitable; at most one waiter.
  auto Wait() {
    struct Awaiter {
      Oneshot* self;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lock(self->mu_);
        if (self->value_) return false;
        PORTAL_ASSERT(!self->waiter_, "Oneshot awaited twice");
        self->waiter_ = h;
        return true;
      }
      T await_resume() {
        std::lock_guard lock(self->mu_);
        return std::move(*self->value_);
      }
    };
    return Awaiter{this};
  }

 private:
  Env& env_;
  mutable std::mutex mu_;
  std::optional<T> value_;
  std::coroutine_handle<> waiter_;
};

// A counting semaphore for coroutines. Acquire() suspends while no permit is free;
// permits are handed to waiters in FIFO order.
class AsyncSemaphore {
 public:
  AsyncSemaphore(Env& env, uint64_t permits) : env_(env), available_(permits) {}
  AsyncSemaphore(const AsyncSemaphore&) = delete;
  AsyncSemaphore& operator=(const AsyncSemaphore&) = delete;

  class [[nodiscard]] Permit {
   public:
    Permit() = default;
    explicit Permit(AsyncSemaphore* s) : sem_(s) {}
    Permit(Permit&& o) noexcept : sem_(std::exchange(o.sem_, nullptr)) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        Release();
        sem_ = std::exchange(o.sem_, nullptr);
      }
      return *this;
    }
    ~Permit() { Release(); }
    void Release() {
      if (sem_) std::exchange(sem_, nullptr)->Release();
    }

   private:
    AsyncSemaphore* sem_ = nullptr;
  };

  // co_await sem.Acquire() -> Permit (released when destroyed).
  auto Acquire() {
    struct Awaiter {
      AsyncSemaphore* self;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lock(self->mu_);
        if (self->available_ > 0 && self->waiters_.empty()) {
          --self->available_;
          return false;
        }
        self->waiters_.push_back(h);
        return true;
      }
      Permit await_resume() const noexcept { return Permit(self); }
    };
    return Awaiter{this};
  }

  // Takes a permit without waiting, if one is free.
  std::optional<Permit> TryAcquire() {
    std::lock_guard lock(mu_);
    if (available_ == 0 || !waiters_.empty()) return std::nullopt;
    --available_;
    return Permit(this);
  }

  uint64_t available() const {
    std::lock_guard lock(mu_);
    return available_;
  }

 private:
  void Release() {
    std::coroutine_handle<> next;
    {
      std::lock_guard lock(mu_);
      if (waiters_.empty()) {
        ++available_;
        return;
      }
      next = waiters_.front();  // the permit passes straight to the next waiter
      waiters_.pop_front();
    }
    env_.Post([next] { next.resume(); });
  }

  Env& env_;
  mutable std::mutex mu_;
  uint64_t available_;
  std::deque<std::coroutine_handle<>> waiters_;
};

// A mutex for critical sections that span co_await. FIFO.
class AsyncMutex {
 public:
  explicit AsyncMutex(Env& env) : sem_(env, 1) {}
  using Guard = AsyncSemaphore::Permit;
  // auto guard = co_await mu.Lock();
  auto Lock() { return sem_.Acquire(); }
  std::optional<Guard> TryLock() { return sem_.TryAcquire(); }

 private:
  AsyncSemaphore sem_;
};

// Counts outstanding work; Wait() resumes when the count is zero.
class WaitGroup {
 public:
  explicit WaitGroup(Env& env) : env_(env) {}
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  void Add(uint64_t n = 1) {
    std::lock_guard lock(mu_);
    count_ += n;
  }
  void Done() {
    std::vector<std::coroutine_handle<>> wake;
    {
      std::lock_guard lock(mu_);
      PORTAL_ASSERT(count_ > 0, "WaitGroup::Done without Add");
      if (--count_ == 0) wake.swap(waiters_);
    }
    for (auto h : wake) env_.Post([h] { h.resume(); });
  }
  uint64_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  auto Wait() {
    struct Awaiter {
      WaitGroup* self;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lock(self->mu_);
        if (self->count_ == 0) return false;
        self->waiters_.push_back(h);
        return true;
      }
      void await_resume() const noexcept {}
    };
    return Awaiter{this};
  }

 private:
  Env& env_;
  mutable std::mutex mu_;
  uint64_t count_ = 0;
  std::vector<std::coroutine_handle<>> waiters_;
};

// Broadcast "state changed" for coroutine loops, free of lost wake-ups:
//
//   for (;;) {
//     uint64_t seen = notifier.epoch();
//     if (Condition()) break;
//     co_await notifier.Wait(seen, timeout_ns);   // returns at once if epoch moved
//   }
//
// Wait returns true when notified, false on timeout.
class Notifier {
 public:
  static constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();

  explicit Notifier(Env& env) : env_(env), state_(std::make_shared<State>()) {}
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  uint64_t epoch() const {
    std::lock_guard lock(state_->mu);
    return state_->epoch;
  }

  void NotifyAll() {
    std::vector<std::shared_ptr<Waiter>> wake;
    {
      std::lock_guard lock(state_->mu);
      ++state_->epoch;
      wake.swap(state_->waiters);
    }
    for (auto& w : wake) {
      if (!w->fired.exchange(true)) {
        w->notified = true;
        env_.Post([h = w->handle] { h.resume(); });
      }
    }
  }

  auto Wait(uint64_t seen_epoch, uint64_t timeout_ns = kForever) {
    struct Awaiter {
      Notifier* self;
      uint64_t seen;
      uint64_t timeout_ns;
      std::shared_ptr<Waiter> w;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        auto state = self->state_;
        w = std::make_shared<Waiter>();
        w->handle = h;
        {
          std::lock_guard lock(state->mu);
          if (state->epoch != seen) {
            w->notified = true;
            return false;
          }
          state->waiters.push_back(w);
        }
        if (timeout_ns != kForever) {
          self->env_.PostAfter(timeout_ns, [state, w = w] {
            if (w->fired.exchange(true)) return;
            {
              std::lock_guard lock(state->mu);
              std::erase(state->waiters, w);
            }
            w->handle.resume();
          });
        }
        return true;
      }
      bool await_resume() const noexcept { return w->notified; }
    };
    return Awaiter{this, seen_epoch, timeout_ns, nullptr};
  }

 private:
  struct Waiter {
    std::coroutine_handle<> handle;
    std::atomic<bool> fired{false};
    bool notified = false;
  };
  struct State {
    std::mutex mu;
    uint64_t epoch = 0;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };

  Env& env_;
  std::shared_ptr<State> state_;
};

// A one-way "give up now" for retry loops: Cancel() sets it for good and cuts short every
// Sleep() in progress or to come, so a loop waiting out a backoff notices at once rather
// than at its next attempt. Thread-safe.
class Cancellation {
 public:
  explicit Cancellation(Env& env) : wake_(env) {}
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  void Cancel() {
    cancelled_.store(true, std::memory_order_release);
    wake_.NotifyAll();
  }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // co_await c.Sleep(ns): `ns` of Env time, or less: it returns as soon as cancelled.
  Task<void> Sleep(uint64_t ns) {
    const uint64_t seen = wake_.epoch();
    if (cancelled()) co_return;
    co_await wake_.Wait(seen, ns);
  }

 private:
  std::atomic<bool> cancelled_{false};
  Notifier wake_;
};

}  // namespace portal
