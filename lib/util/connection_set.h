// ConnectionSet: a server's live connections, bounded in number, for an orderly
// shutdown. The NBD server, the control socket and trace-record's proxy share it: admit
// under a limit (never once stopping), forget on close, stop admitting and take the
// connections to shut down, then wait for them to go (with a timeout).
//
// Thread-safe: one mutex guards the set; waiters wake on every Remove() and Notify().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace portal {

template <typename Conn>
class ConnectionSet {
 public:
  enum class Admit { kAdded, kFull, kStopping };

  explicit ConnectionSet(size_t limit) : limit_(limit) {}
  ConnectionSet(const ConnectionSet&) = delete;
  ConnectionSet& operator=(const ConnectionSet&) = delete;

  // Adds make() (called under the lock, so a Stop() either sees the connection or the
  // connection is never made) unless stopping or at the limit.
  template <typename Make>
  std::shared_ptr<Conn> Add(Make&& make, Admit* result) {
    std::lock_guard lock(mu_);
    if (stopping_) {
      *result = Admit::kStopping;
      return nullptr;
    }
    if (set_.size() >= limit_) {
      *result = Admit::kFull;
      return nullptr;
    }
    std::shared_ptr<Conn> c = make();
    set_.insert(c);
    *result = Admit::kAdded;
    return c;
  }

  void Remove(const Conn* c) {
    std::lock_guard lock(mu_);
    for (auto it = set_.begin(); it != set_.end(); ++it) {
      if (it->get() == c) {
        set_.erase(it);
        break;
      }
    }
    cv_.notify_all();
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return set_.size();
  }
  bool stopping() const {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  // Stops admitting. The first call returns true and the connections to shut down;
  // later calls return false.
  bool Stop(std::vector<std::shared_ptr<Conn>>* conns) {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    stopping_ = true;
    conns->assign(set_.begin(), set_.end());
    return true;
  }

  // Waits until done() holds (evaluated under the lock) or `timeout` passes; false then.
  template <typename Pred>
  bool WaitFor(std::chrono::milliseconds timeout, Pred done) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, done);
  }
  bool WaitEmpty(std::chrono::milliseconds timeout) {
    return WaitFor(timeout, [&] { return set_.empty(); });
  }
  // Wakes WaitFor() callers whose condition depends on something else.
  void Notify() {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

 private:
  const size_t limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_set<std::shared_ptr<Conn>> set_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                          // GUARDED_BY(mu_)
};

}  // namespace portal
