#include "objstore/fault_store.h"

#include <algorithm>

#include "env/async.h"
#include "util/log.h"

namespace portal::objstore {
namespace {

constexpr uint64_t kPpm = 1'000'000;

// Probabilities become integer parts per million once, so draws are pure integer math.
uint64_t ToPpm(double p) {
  if (!(p > 0)) return 0;
  if (p >= 1) return kPpm;
  return static_cast<uint64_t>(p * static_cast<double>(kPpm));
}

bool IsMutation(OpKind kind) {
  return kind == OpKind::kPut || kind == OpKind::kPutIfAbsent || kind == OpKind::kDelete;
}

Status CrashedStatus() { return Status::Shutdown("fault store: crashed"); }

}  // namespace

FaultStore::FaultStore(std::unique_ptr<ObjectStore> inner, Env& env, FaultOptions options)
    : inner_(std::move(inner)), env_(env), options_(std::move(options)), rng_(options_.seed) {}

void FaultStore::Crash() {
  if (!crashed_.exchange(true, std::memory_order_acq_rel)) {
    log::Get("portalbd::objstore")->info("fault store crashed url={}", inner_->url());
  }
}

FaultStore::Counts FaultStore::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

FaultDecision FaultStore::Decide(OpKind kind, std::string_view key) {
  std::lock_guard lock(mu_);
  FaultDecision d;
  if (options_.decide) {
    d = options_.decide(kind, key);
  } else {
    // Always three draws, whatever the outcome, so that the sequence stays aligned.
    uint64_t latency_roll = rng_.Below(kPpm);
    uint64_t latency_pick = rng_.Next();
    uint64_t fault_roll = rng_.Below(kPpm);
    if (latency_roll < ToPpm(options_.latency_probability)) {
      uint64_t lo = options_.min_latency_ns;
      uint64_t hi = std::max(lo, options_.max_latency_ns);
      d.latency_ns = lo + (hi - lo == UINT64_MAX ? latency_pick : latency_pick % (hi - lo + 1));
    }
    uint64_t err = ToPpm(options_.error_probability);
    uint64_t lost = IsMutation(kind) ? ToPpm(options_.lost_ack_probability) : 0;
    if (fault_roll < err) {
      static constexpr const char* kErrors[] = {"injected: HTTP 503 SlowDown",
                                                "injected: HTTP 500 InternalError",
                                                "injected: request timed out"};
      d.action = FaultDecision::Action::kFail;
      d.error = Status::Unavailable(kErrors[fault_roll % 3]);
    } else if (fault_roll < err + lost) {
      d.action = FaultDecision::Action::kLoseAck;
      d.error = Status::Unavailable("injected: connection reset before the reply");
    }
  }
  if (d.action == FaultDecision::Action::kFail) ++counts_.failed;
  if (d.action == FaultDecision::Action::kLoseAck) ++counts_.lost_acks;
  if (d.latency_ns > 0) ++counts_.delayed;
  return d;
}

Task<Status> FaultStore::Before(const FaultDecision& d) {
  if (crashed()) co_return CrashedStatus();
  if (d.latency_ns > 0) co_await SleepFor(env_, d.latency_ns);
  if (crashed()) co_return CrashedStatus();
  if (d.action == FaultDecision::Action::kFail) co_return d.error;
  co_return Status::Ok();
}

Status FaultStore::After(const FaultDecision& d) const {
  if (crashed()) return CrashedStatus();
  if (d.action == FaultDecision::Action::kLoseAck) return d.error;
  return Status::Ok();
}

Task<Result<std::string>> FaultStore::Get(std::string key, std::optional<GetRange> range) {
  FaultDecision d = Decide(OpKind::kGet, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  auto r = co_await inner_->Get(std::move(key), range);
  CO_RETURN_IF_ERROR(After(d));
  using Action = FaultDecision::Action;
  const bool damages = d.action == Action::kCorruptBody || d.action == Action::kFlipBit ||
                       d.action == Action::kTornBody || d.action == Action::kShortBody;
  if (damages && r.ok() && !r->empty()) {
    std::string& body = *r;
    const uint64_t at = d.corrupt_from_end % body.size();
    if (d.action == Action::kCorruptBody) body[body.size() - 1 - at] ^= 0xff;
    if (d.action == Action::kFlipBit) {
      const uint64_t bit = d.corrupt_from_end % (uint64_t{body.size()} * 8);
      body[bit / 8] = static_cast<char>(body[bit / 8] ^ (1 << (bit % 8)));
    }
    if (d.action == Action::kTornBody) std::fill(body.begin() + static_cast<ptrdiff_t>(at), body.end(), '\0');
    if (d.action == Action::kShortBody) body.resize(at);
    std::lock_guard lock(mu_);
    ++counts_.corrupted;
  }
  co_return r;
}

Task<Result<ObjectInfo>> FaultStore::Head(std::string key) {
  FaultDecision d = Decide(OpKind::kHead, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  auto r = co_await inner_->Head(std::move(key));
  CO_RETURN_IF_ERROR(After(d));
  co_return r;
}

Task<Status> FaultStore::Put(std::string key, std::string data) {
  FaultDecision d = Decide(OpKind::kPut, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  Status s = co_await inner_->Put(std::move(key), std::move(data));
  CO_RETURN_IF_ERROR(After(d));
  co_return s;
}

Task<Status> FaultStore::PutIfAbsent(std::string key, std::string data) {
  FaultDecision d = Decide(OpKind::kPutIfAbsent, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  Status s = co_await inner_->PutIfAbsent(std::move(key), std::move(data));
  CO_RETURN_IF_ERROR(After(d));
  co_return s;
}

Task<Status> FaultStore::PutIfAbsentRope(std::string key, Rope data) {
  FaultDecision d = Decide(OpKind::kPutIfAbsent, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  Status s = co_await inner_->PutIfAbsentRope(std::move(key), std::move(data));
  CO_RETURN_IF_ERROR(After(d));
  co_return s;
}

Task<Status> FaultStore::Delete(std::string key) {
  FaultDecision d = Decide(OpKind::kDelete, key);
  CO_RETURN_IF_ERROR(co_await Before(d));
  Status s = co_await inner_->Delete(std::move(key));
  CO_RETURN_IF_ERROR(After(d));
  co_return s;
}

Task<Result<std::vector<ObjectInfo>>> FaultStore::List(std::string prefix,
                                                       std::string start_after) {
  FaultDecision d = Decide(OpKind::kList, prefix);
  CO_RETURN_IF_ERROR(co_await Before(d));
  auto r = co_await inner_->List(std::move(prefix), std::move(start_after));
  CO_RETURN_IF_ERROR(After(d));
  co_return r;
}

Task<Status> FaultStore::CheckAccess() {
  FaultDecision d = Decide(OpKind::kCheckAccess, "");
  CO_RETURN_IF_ERROR(co_await Before(d));
  Status s = co_await inner_->CheckAccess();
  CO_RETURN_IF_ERROR(After(d));
  co_return s;
}

}  // namespace portal::objstore
