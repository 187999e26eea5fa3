// InflightBudget: one bound on READ and WRITE payload memory over every NBD connection
// of a server. Each Session also keeps its own bound (Session::Options); this one stops
// many connections, each within its own bound, from adding up to more than the host has.
//
// A session takes a request's payload bytes (TryTake) when it parses the request's
// header, and gives them back (Lease's destructor) when the payload's memory is freed: a
// WRITE's when the device has taken it, a READ's when its reply has been written. A
// session that cannot take bytes stops reading from its socket and asks to be woken
// (the `wake` callback of TryTake) when bytes come back; it never fails a request.
//
// Progress: a request larger than the whole budget is admitted when nothing else is
// held, so every request runs eventually. Bytes are only held by requests being read,
// running on the device or being answered, which end without any other connection's
// help (a peer that stops sending or reading is cut off by the server's request
// timeout), so a waiter is always woken.
//
// Thread-safe: sessions on different strands share one budget. `wake` callbacks run on
// the thread that gives bytes back, outside the lock; they must only post work.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace portal::nbd {

class InflightBudget {
 public:
  explicit InflightBudget(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  InflightBudget(const InflightBudget&) = delete;
  InflightBudget& operator=(const InflightBudget&) = delete;

  // Bytes taken from a budget; given back when destroyed. Movable, not copyable.
  class Lease {
   public:
    Lease() = default;
    Lease(InflightBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    Lease(Lease&& o) noexcept : budget_(o.budget_), bytes_(o.bytes_) { o.budget_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept;
    ~Lease() { Reset(); }
    void Reset();
    uint64_t bytes() const { return budget_ ? bytes_ : 0; }

   private:
    InflightBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // Takes `bytes` if they fit (or if nothing is held at all), returning their lease.
  // Otherwise takes nothing, queues `wake` to run once when bytes are next given back,
  // and returns an empty lease (check taken()). The budget must outlive every lease.
  Lease TryTake(uint64_t bytes, std::function<void()> wake, bool* taken);

  uint64_t max_bytes() const { return max_bytes_; }
  uint64_t used_bytes() const;
  size_t waiters() const;
  // The most ever held at once (tests, status).
  uint64_t peak_bytes() const;

 private:
  void Give(uint64_t bytes);

  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  uint64_t used_ = 0;                        // GUARDED_BY(mu_)
  uint64_t peak_ = 0;                        // GUARDED_BY(mu_)
  std::vector<std::function<void()>> wake_;  // GUARDED_BY(mu_)
};

}  // namespace portal::nbd
