#include "volume/durability.h"

#include <utility>
#include <vector>

#include "util/assert.h"

namespace portal::volume {

Task<Status> DurableGenerations::AwaitDurable(uint64_t gen) {
  Waiter done;
  {
    std::lock_guard lock(mu_);
    if (gen <= durable_) co_return Status::Ok();
    if (!failed_.ok()) co_return failed_;
    done = std::make_shared<Oneshot<Status>>(env_);
    waiters_.emplace(gen, done);
  }
  co_return co_await done->Wait();
}

void DurableGenerations::MarkDurable(uint64_t gen) {
  std::vector<Waiter> ready;
  {
    std::lock_guard lock(mu_);
    if (gen <= durable_) return;
    durable_ = gen;
    auto end = waiters_.upper_bound(gen);
    for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
    waiters_.erase(waiters_.begin(), end);
  }
  for (auto& w : ready) w->Set(Status::Ok());  // resumes on the executor, in order
}

void DurableGenerations::Fail(Status error) {
  PORTAL_ASSERT(!error.ok(), "DurableGenerations::Fail with Ok");
  std::vector<Waiter> failed;
  {
    std::lock_guard lock(mu_);
    if (!failed_.ok()) return;
    failed_ = error;
    for (auto& [gen, w] : waiters_) failed.push_back(std::move(w));
    waiters_.clear();
  }
  for (auto& w : failed) w->Set(error);
}

uint64_t DurableGenerations::durable() const {
  std::lock_guard lock(mu_);
  return durable_;
}

size_t DurableGenerations::waiters() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

}  // namespace portal::volume
