// DurableGenerations: which write generations are durable, and who waits for which.
//
// A generation numbers one write buffer of the volume (the first buffer is 1, each seal
// starts the next); it is durable once the segment holding it settled in the store. A
// FLUSH awaits the generation of what it must make durable; the uploader marks each
// generation durable when its segment settles, in order, or fails every waiter once
// nothing more can become durable (fenced, the stop gave up).
//
//   Flush:    co_await durable.AwaitDurable(g)       (volume_write.cc)
//   Uploader: durable.MarkDurable(g) after segment upload and apply   (uploader.cc)
//             durable.Fail(st) via LsmVolume::FenceLocked / GiveUpNow
//
// Each waiter is its own Oneshot, kept by generation until one of those resolves it;
// resolution resumes it on the Env's executor (never inline), so MarkDurable and Fail
// may be called with a caller's std::mutex held. Works on every Env (real and dst's).
//
// Thread-safe. Waiters are bounded by the suspended FLUSH/FUA requests (see env/async.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "env/async.h"
#include "env/env.h"
#include "env/task.h"
#include "util/status.h"

namespace portal::volume {

class DurableGenerations {
 public:
  explicit DurableGenerations(Env& env) : env_(env) {}
  DurableGenerations(const DurableGenerations&) = delete;
  DurableGenerations& operator=(const DurableGenerations&) = delete;

  // Ok once generation `gen` (and so every one below) is durable: at once when it
  // already is. Otherwise the status Fail() gave, at once when it was given already.
  Task<Status> AwaitDurable(uint64_t gen);
  // Every generation up to `gen` is durable: resolves their waiters with Ok. Generations
  // only grow (a lower `gen` than before changes nothing).
  void MarkDurable(uint64_t gen);
  // Nothing more becomes durable: every waiter, now and later, for a generation above
  // the durable one gets `error` (not Ok). The first failure wins; it is never undone.
  void Fail(Status error);

  uint64_t durable() const;
  size_t waiters() const;  // for tests

 private:
  using Waiter = std::shared_ptr<Oneshot<Status>>;

  Env& env_;
  mutable std::mutex mu_;
  uint64_t durable_ = 0;                     // GUARDED_BY(mu_)
  Status failed_;                            // GUARDED_BY(mu_): Ok until Fail
  std::multimap<uint64_t, Waiter> waiters_;  // GUARDED_BY(mu_): by generation awaited
};

}  // namespace portal::volume
