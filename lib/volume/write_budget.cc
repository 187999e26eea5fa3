// The shared write-buffer budget: charges, reservations, a FIFO of waiters, and pushes.
#include "volume/write_budget.h"

#include "util/assert.h"

namespace portal::volume {

WriteBudget::WriteBudget(Env& env, uint64_t limit_bytes) : limit_(limit_bytes), room_(env) {}

std::shared_ptr<WriteBudget::Account> WriteBudget::Join(std::function<void()> push) {
  auto a = std::make_shared<Account>(std::move(push));
  std::lock_guard lock(mu_);
  accounts_.insert(a);
  return a;
}

void WriteBudget::Leave(Account& a) {
  {
    // Waits for a push running now; none starts after this.
    std::lock_guard push_lock(a.push_mu_);
    a.push_ = nullptr;
  }
  {
    std::lock_guard lock(mu_);
    held_ -= a.held_;
    active_ -= a.active_;
    reserved_ -= a.reserved_;
    a.held_ = a.active_ = a.reserved_ = 0;
    for (auto it = accounts_.begin(); it != accounts_.end(); ++it) {
      if (it->get() == &a) {
        accounts_.erase(it);
        break;
      }
    }
  }
  room_.NotifyAll();
}

void WriteBudget::NoteUsedLocked() { high_water_ = std::max(high_water_, UsedLocked()); }

void WriteBudget::Update(Account& a, uint64_t held_bytes, uint64_t active_bytes,
                         uint64_t release_bytes) {
  {
    std::lock_guard lock(mu_);
    PORTAL_ASSERT(release_bytes <= a.reserved_, "write budget: released more than reserved");
    // The new charge first, then the release: in between the sum only over-counts.
    held_ = held_ - a.held_ + held_bytes;
    a.held_ = held_bytes;
    active_bytes = std::min(active_bytes, held_bytes);
    active_ = active_ - a.active_ + active_bytes;
    a.active_ = active_bytes;
    a.reserved_ -= release_bytes;
    reserved_ -= release_bytes;
    NoteUsedLocked();
  }
  room_.NotifyAll();
}

WriteBudget::Waiter::Waiter(WriteBudget& budget, Account& account, uint64_t need)
    : budget_(budget), account_(account), need_(need) {}

WriteBudget::Waiter::~Waiter() {
  if (ticket_ == 0 || reserved_) return;
  {
    std::lock_guard lock(budget_.mu_);
    budget_.queue_.erase(ticket_);
  }
  budget_.room_.NotifyAll();  // the next in line may fit
}

bool WriteBudget::Waiter::TryReserve() {
  if (reserved_) return true;
  bool next_may_fit = false;
  {
    std::lock_guard lock(budget_.mu_);
    WriteBudget& b = budget_;
    // First come, first served: only the oldest waiter (or anyone while none waits).
    const bool first = b.queue_.empty() || (ticket_ != 0 && *b.queue_.begin() == ticket_);
    const uint64_t used = b.UsedLocked();
    // A write that adds nothing never waits; one larger than the budget goes alone.
    const bool fits = need_ == 0 || used + need_ <= b.limit_ || used == 0;
    if (!(fits && (first || need_ == 0))) {
      if (ticket_ == 0) {
        ticket_ = b.next_ticket_++;
        b.queue_.insert(ticket_);
        ++b.waits_;
      }
      // What is left once the sealed buffers settle: if that still leaves no room, the
      // first in line pushes the active ones.
      const uint64_t stuck = b.reserved_ + b.active_;
      push_ = *b.queue_.begin() == ticket_ && b.active_ > 0 &&
              !(stuck + need_ <= b.limit_ || stuck == 0);
      return false;
    }
    account_.reserved_ += need_;
    b.reserved_ += need_;
    b.NoteUsedLocked();
    reserved_ = true;
    if (ticket_ != 0) {
      b.queue_.erase(ticket_);
      next_may_fit = !b.queue_.empty();
    }
  }
  if (next_may_fit) budget_.room_.NotifyAll();
  return true;
}

void WriteBudget::PushHolders() {
  std::vector<std::shared_ptr<Account>> holders;
  {
    std::lock_guard lock(mu_);
    for (const auto& a : accounts_) {
      if (a->active_ > 0) holders.push_back(a);
    }
  }
  for (const auto& a : holders) {
    std::lock_guard push_lock(a->push_mu_);
    if (a->push_) a->push_();
  }
}

WriteBudgetStats WriteBudget::stats() const {
  std::lock_guard lock(mu_);
  return WriteBudgetStats{.limit_bytes = limit_,
                          .used_bytes = UsedLocked(),
                          .high_water_bytes = high_water_,
                          .waits = waits_,
                          .accounts = accounts_.size()};
}

}  // namespace portal::volume
