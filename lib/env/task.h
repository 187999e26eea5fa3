// Task<T>: a lazy, single-consumer coroutine; the unit of asynchronous work in lib/.
//
//   Task<Result<std::string>> Get(std::string key);
//   ...
//   CO_ASSIGN_OR_RETURN(auto bytes, co_await store.Get(key));
//
// A Task does nothing until it is awaited (or handed to Start). Awaiting runs the child
// at once; if it finishes without suspending, the awaiter continues without suspending
// either, so a loop over tasks that complete inline uses constant stack in every build
// (symmetric transfer would need the tail calls that -O0 and sanitizers give up). If the
// child suspends, whichever of "the awaiter suspended" and "the child finished" happens
// second resumes the awaiter (an atomic flag decides). Where a coroutine resumes
// after a real suspension is decided by the awaitable that suspended it: every awaitable
// in env/ resumes on the Env's executor (see env.h), never on a foreign thread.
//
// Lifetime rules (the usual ones for lazy coroutines):
// - Parameters taken by reference or view must outlive the task: fine when the caller
//   awaits it at once, wrong when the task is stored or started detached.
// - Never write a coroutine as a lambda with captures that is called and then dropped.
//
// Exceptions: lib/ does not throw; an exception escaping a coroutine is a bug and
// terminates the process.
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace portal {

template <typename T = void>
class Task;

namespace detail {

class TaskPromiseBase {
 public:
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> h) noexcept {
      TaskPromiseBase& p = h.promise();
      // Second to arrive: the awaiter has already suspended, so resume it. (It may
      // destroy this frame; nothing here touches it afterwards.)
      if (p.done_or_waiting_.exchange(true, std::memory_order_acq_rel)) p.continuation_.resume();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() const noexcept { std::terminate(); }

  // Runs the child until it first suspends or finishes. Returns true if the awaiter
  // must suspend (the child will resume it), false if the child already finished.
  bool StartAndCheckSuspend(std::coroutine_handle<> self, std::coroutine_handle<> awaiting) {
    continuation_ = awaiting;
    self.resume();
    return !done_or_waiting_.exchange(true, std::memory_order_acq_rel);
  }

 private:
  std::coroutine_handle<> continuation_;
  std::atomic<bool> done_or_waiting_{false};
};

template <typename T>
class TaskPromise final : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  void return_value(T value) noexcept(std::is_nothrow_move_constructible_v<T>) {
    value_.emplace(std::move(value));
  }
  T take() { return std::move(*value_); }

 private:
  std::optional<T> value_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const noexcept {}
};

// A coroutine that starts at once and frees itself at the end; used by Start().
struct DetachedTask {
  struct promise_type {
    DetachedTask get_return_object() const noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  Task() = default;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      Reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { Reset(); }

  bool valid() const noexcept { return static_cast<bool>(h_); }

  auto operator co_await() && noexcept {
    struct Awaiter {
      Handle h;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> awaiting) {
        return h.promise().StartAndCheckSuspend(h, awaiting);
      }
      T await_resume() { return h.promise().take(); }
    };
    return Awaiter{h_};
  }

 private:
  void Reset() noexcept {
    if (h_) {
      h_.destroy();
      h_ = {};
    }
  }
  Handle h_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}
}  // namespace detail

// Runs `task` with no awaiting coroutine. `done` receives its result (no argument for
// Task<void>) on whatever thread the task finishes; inline, before Start returns, when
// the task never suspends.
template <typename T, typename F>
void Start(Task<T> task, F done) {
  [](Task<T> t, F d) -> detail::DetachedTask {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      d();
    } else {
      d(co_await std::move(t));
    }
  }(std::move(task), std::move(done));
}

template <typename T>
void Start(Task<T> task) {
  [](Task<T> t) -> detail::DetachedTask { co_await std::move(t); }(std::move(task));
}

// Runs all tasks concurrently and returns their results in order. The awaiting coroutine
// resumes on the thread that finishes the last task.
template <typename T>
Task<std::vector<T>> WhenAll(std::vector<Task<T>> tasks) {
  struct State {
    std::vector<std::optional<T>> results;
    std::atomic<size_t> remaining{0};
    std::coroutine_handle<> parent;
  };
  struct Awaiter {
    std::vector<Task<T>>* tasks;
    State* state;
    bool await_ready() const noexcept { return tasks->empty(); }
    bool await_suspend(std::coroutine_handle<> parent) {
      state->parent = parent;
      state->remaining.store(tasks->size() + 1, std::memory_order_relaxed);
      for (size_t i = 0; i < tasks->size(); ++i) {
        Start(std::move((*tasks)[i]), [s = state, i](T v) {
          s->results[i].emplace(std::move(v));
          if (s->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) s->parent.resume();
        });
      }
      // The extra count keeps us from being resumed before we finish starting children.
      return state->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1;
    }
    void await_resume() const noexcept {}
  };
  State state;
  state.results.resize(tasks.size());
  co_await Awaiter{&tasks, &state};
  std::vector<T> out;
  out.reserve(state.results.size());
  for (auto& r : state.results) out.push_back(std::move(*r));
  co_return out;
}

}  // namespace portal
