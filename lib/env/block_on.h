// Bridges from ordinary threads into coroutines.
//
// BlockOn(task) runs a task on a RealEnv-backed executor and blocks the calling thread
// until it finishes. Never call it from an executor thread (it would wait on itself).
// RunSim(env, task) drives a SimEnv until the task finishes; asserts if the env goes idle
// first (a deadlock in simulated code).
#pragma once

#include <future>
#include <optional>
#include <type_traits>

#include "env/sim_env.h"
#include "env/task.h"
#include "util/assert.h"

namespace portal {

template <typename T>
T BlockOn(Task<T> task) {
  std::promise<std::conditional_t<std::is_void_v<T>, bool, T>> p;
  auto f = p.get_future();
  if constexpr (std::is_void_v<T>) {
    Start(std::move(task), [&p] { p.set_value(true); });
    f.get();
  } else {
    Start(std::move(task), [&p](T v) { p.set_value(std::move(v)); });
    return f.get();
  }
}

// max_steps bounds the run: a livelock (work that keeps rescheduling itself) fails the
// assertion instead of hanging the test.
template <typename T>
T RunSim(SimEnv& env, Task<T> task, uint64_t max_steps = 50'000'000) {
  std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> out;
  if constexpr (std::is_void_v<T>) {
    Start(std::move(task), [&out] { out.emplace(true); });
  } else {
    Start(std::move(task), [&out](T v) { out.emplace(std::move(v)); });
  }
  bool done = env.RunUntil([&] { return out.has_value(); }, max_steps);
  PORTAL_ASSERT(done, "simulated task never finished: idle env (deadlock) or step budget "
                      "exhausted (livelock)");
  if constexpr (!std::is_void_v<T>) return std::move(*out);
}

}  // namespace portal
