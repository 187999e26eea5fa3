// WriteBudget: one bound on the write buffers of every volume that shares it (the daemon's
// [lsm] max_unflushed_bytes; docs/volumes.md "One budget"). Each volume is an Account; its
// charge is what its active and sealed buffers hold (Uploader, LsmVolume::
// UnflushedBytesLocked). A write reserves the bytes it may add before it buffers them and
// gives the reservation back once its charge says what it really added, so that
//
//   sum of charges + sum of reservations <= limit      (the high-water gauge checks it)
//
// holds at every moment (a write larger than the whole budget goes alone, when nothing else
// is held: the one way past it).
//
// Backpressure, never an error: a write that does not fit waits. Two rules keep waiting
// finite:
// - Push. When even the uploads already on their way (sealed buffers) would not free
//   enough, the first waiter asks every account with an active buffer to upload it now
//   (sealed at once, not at flush_interval_ms or l0_sst_size_bytes): an idle volume's
//   half-filled buffer would otherwise hold the budget forever. Not sooner: every push
//   makes a smaller segment.
// - First come, first served. Once a write waits, later writes (of any volume) queue
//   behind it, so a busy volume cannot starve a second one by taking every byte freed.
//
// Thread-safe. Lock order: a volume's mu_, then the budget's mutex; the budget calls an
// account's push only with neither held (the account's own mutex keeps it from running
// after Leave).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "env/async.h"
#include "env/env.h"

namespace portal::volume {

struct WriteBudgetStats {
  uint64_t limit_bytes = 0;
  uint64_t used_bytes = 0;        // charges + reservations now
  uint64_t high_water_bytes = 0;  // the most used_bytes ever was
  uint64_t waits = 0;             // writes that had to wait for room
  uint64_t accounts = 0;          // volumes sharing it
};

class WriteBudget {
 public:
  WriteBudget(Env& env, uint64_t limit_bytes);
  WriteBudget(const WriteBudget&) = delete;
  WriteBudget& operator=(const WriteBudget&) = delete;

  class Account;
  // A volume joins; `push` asks it to start uploading everything it buffers (called
  // without the budget's lock, never after Leave returns). The budget must outlive it.
  std::shared_ptr<Account> Join(std::function<void()> push);
  // The volume's charge goes (waking waiters) and its push is never called again.
  void Leave(Account& a);

  // Sets the account's charge to what it holds now (`held_bytes`, of which `active_bytes`
  // are in a buffer not yet sealed for upload), and gives back `release_bytes` of its
  // reservations. Call after every change that may shrink the charge (an upload settled),
  // and after a write (with what it reserved). A buffer sealed since need not be told
  // (an active figure too high only pushes a buffer already on its way).
  void Update(Account& a, uint64_t held_bytes, uint64_t active_bytes, uint64_t release_bytes = 0);

  // One write's wait for `need` bytes (sans-io: the volume runs the loop, so that it
  // also wakes for its own fence or stop):
  //   Waiter w(budget, account, need);
  //   for (;;) { seen = budget.epoch(); if (volume failed) return; if (w.TryReserve())
  //              break; if (w.push()) budget.PushHolders(); co_await budget.Wait(seen); }
  // The waiter's place in the queue goes with it; TryReserve counts a wait once.
  class Waiter {
   public:
    Waiter(WriteBudget& budget, Account& account, uint64_t need);
    ~Waiter();
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    // True once `need` is reserved to the account (give it back with Update).
    bool TryReserve();
    bool waited() const { return ticket_ != 0; }
    // After a failed TryReserve: this waiter is first in line, and the uploads on their
    // way would not make room for it (PushHolders).
    bool push() const { return push_; }

   private:
    WriteBudget& budget_;
    Account& account_;
    uint64_t need_;
    uint64_t ticket_ = 0;  // 0: not queued
    bool reserved_ = false;
    bool push_ = false;
  };

  // Asks every account with an active buffer to upload it (Join's push).
  void PushHolders();
  uint64_t epoch() const { return room_.epoch(); }
  auto Wait(uint64_t seen) { return room_.Wait(seen); }
  // Waiters look again (a volume fenced or gave up: its writers fail).
  void Wake() { room_.NotifyAll(); }

  WriteBudgetStats stats() const;
  uint64_t limit_bytes() const { return limit_; }

 private:
  uint64_t UsedLocked() const { return held_ + reserved_; }
  void NoteUsedLocked();

  const uint64_t limit_;
  Notifier room_;
  mutable std::mutex mu_;
  std::set<std::shared_ptr<Account>> accounts_;  // GUARDED_BY(mu_)
  std::set<uint64_t> queue_;                     // GUARDED_BY(mu_): waiting tickets
  uint64_t next_ticket_ = 1;                     // GUARDED_BY(mu_)
  uint64_t held_ = 0;                            // GUARDED_BY(mu_): sum of charges
  uint64_t active_ = 0;                          // GUARDED_BY(mu_): of which not sealed
  uint64_t reserved_ = 0;                        // GUARDED_BY(mu_)
  uint64_t high_water_ = 0;                      // GUARDED_BY(mu_)
  uint64_t waits_ = 0;                           // GUARDED_BY(mu_)
};

class WriteBudget::Account {
 public:
  explicit Account(std::function<void()> push) : push_(std::move(push)) {}

 private:
  friend class WriteBudget;
  std::mutex push_mu_;          // push_ running vs Leave
  std::function<void()> push_;  // GUARDED_BY(push_mu_); empty after Leave
  uint64_t held_ = 0;           // GUARDED_BY(budget mu_)
  uint64_t active_ = 0;         // GUARDED_BY(budget mu_)
  uint64_t reserved_ = 0;       // GUARDED_BY(budget mu_)
};

}  // namespace portal::volume
