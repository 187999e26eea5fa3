#include "dst/faults.h"

#include <fmt/format.h>

namespace portal::dst {
namespace {

using objstore::FaultDecision;
using objstore::OpKind;

constexpr uint32_t kPpm = 1'000'000;

bool IsMutation(OpKind k) {
  return k == OpKind::kPut || k == OpKind::kPutIfAbsent || k == OpKind::kDelete;
}

struct TriggerKind {
  OpKind kind;
  const char* prefix;
  uint32_t max_nth;
};
// Where a crash hurts: between an SST upload and its manifest (after map/ PUT), during
// GC (DELETE), during replay (GET seg/, LIST), mid-commit (manifest PUT), mid-upload.
constexpr TriggerKind kTriggerKinds[] = {
    {OpKind::kPutIfAbsent, "seg/", 40},     {OpKind::kPutIfAbsent, "map/", 12},
    {OpKind::kPutIfAbsent, "manifest/", 8}, {OpKind::kDelete, "", 10},
    {OpKind::kGet, "seg/", 40},             {OpKind::kList, "", 4},
    {OpKind::kHead, "manifest/", 8},        {OpKind::kPutIfAbsent, "snap/", 3},
};

}  // namespace

std::string CrashTrigger::Describe() const {
  return fmt::format("crash {} the {}th {} {}", after ? "after" : "before", nth,
                     objstore::OpKindName(kind), prefix.empty() ? "(any key)" : prefix);
}

FaultPlan::FaultPlan(Env& env, const FaultKnobs& knobs, uint64_t seed)
    : env_(env), k_(knobs), seed_(seed) {}

std::function<FaultDecision(OpKind, std::string_view)> FaultPlan::HookFor(
    int id, std::function<void(const std::string&)> on_crash) {
  Incarnation& inc = incs_[id];
  inc.rng = Prng(seed_ * 0x9e3779b97f4a7c15ULL + uint64_t(id) * 7919 + 17);
  inc.body_rng = Prng(seed_ * 0x2545f4914f6cdd1dULL + uint64_t(id) * 104729 + 3);
  inc.on_crash = std::move(on_crash);
  return [this, id](OpKind kind, std::string_view key) { return Decide(incs_.at(id), kind, key); };
}

std::string FaultPlan::ArmRandomTrigger(int id, Prng& rng) {
  Incarnation& inc = incs_.at(id);
  const TriggerKind& t = kTriggerKinds[rng.Below(std::size(kTriggerKinds))];
  inc.has_trigger = true;
  inc.trigger = CrashTrigger{t.kind, t.prefix, uint32_t(1 + rng.Below(t.max_nth)),
                             IsMutation(t.kind) && rng.Below(2) == 0};
  inc.matches = 0;
  return inc.trigger.Describe();
}

std::string FaultPlan::ArmSnapshotTrigger(int id, SnapOp op, Prng& rng) {
  Incarnation& inc = incs_.at(id);
  if (inc.has_trigger || inc.crashed) return "";
  static constexpr TriggerKind kCreate[] = {
      {OpKind::kPutIfAbsent, "snap/", 1}, {OpKind::kPutIfAbsent, "manifest/", 2},
      {OpKind::kPutIfAbsent, "map/", 1}};
  static constexpr TriggerKind kRestore[] = {{OpKind::kPutIfAbsent, "manifest/", 1}};
  static constexpr TriggerKind kDelete[] = {{OpKind::kPutIfAbsent, "manifest/", 1},
                                            {OpKind::kDelete, "snap/", 1}};
  const TriggerKind& t = op == SnapOp::kCreate    ? kCreate[rng.Below(std::size(kCreate))]
                         : op == SnapOp::kRestore ? kRestore[0]
                                                  : kDelete[rng.Below(std::size(kDelete))];
  inc.has_trigger = true;
  inc.trigger = CrashTrigger{t.kind, t.prefix, uint32_t(1 + rng.Below(t.max_nth)),
                             rng.Below(2) == 0};
  inc.matches = 0;
  return inc.trigger.Describe();
}

void FaultPlan::set_triggers_suspended(int id, bool suspended) {
  auto it = incs_.find(id);
  if (it != incs_.end()) it->second.suspended = suspended;
}

FaultDecision FaultPlan::Decide(Incarnation& inc, OpKind kind, std::string_view key) {
  FaultDecision d;
  if (inc.crashed) {  // the process is dead: nothing it sends arrives
    d.action = FaultDecision::Action::kFail;
    d.error = Status::Shutdown("dst: the process crashed");
    return d;
  }
  // Fixed number of draws per call keeps the stream aligned whatever is enabled.
  const uint64_t lat_roll = inc.rng.Below(kPpm), lat_pick = inc.rng.Next();
  const uint64_t fault_roll = inc.rng.Below(kPpm), which = inc.rng.Below(3);
  if (inc.has_trigger && !inc.suspended && enabled_ && kind == inc.trigger.kind &&
      key.substr(0, inc.trigger.prefix.size()) == inc.trigger.prefix &&
      ++inc.matches == inc.trigger.nth) {
    inc.crashed = true;
    inc.has_trigger = false;
    const std::string why = inc.trigger.Describe() + " " + std::string(key);
    if (inc.on_crash) inc.on_crash(why);
    // Before: the request never arrives. After: it takes effect, the reply is lost.
    d.action = inc.trigger.after ? FaultDecision::Action::kLoseAck : FaultDecision::Action::kFail;
    d.error = Status::Shutdown("dst: " + why);
    return d;
  }
  if (!enabled_) return d;
  if (lat_roll < k_.straggler_ppm && k_.straggler_max_ns > 0) {
    d.latency_ns = lat_pick % k_.straggler_max_ns;
  } else if (lat_roll < uint64_t(k_.straggler_ppm) + k_.latency_ppm && k_.latency_max_ns > 0) {
    d.latency_ns = lat_pick % k_.latency_max_ns;
  }
  uint64_t err = k_.error_ppm;
  if (k_.burst_period_ms > 0) {
    const uint64_t ms = env_.NowNanos() / kNanosPerMilli;
    if (ms % k_.burst_period_ms < k_.burst_len_ms) err = k_.burst_error_ppm;
  }
  const uint64_t lost = IsMutation(kind) ? k_.lost_ack_ppm : 0;
  static constexpr const char* kErrors[] = {"dst: HTTP 503 SlowDown", "dst: HTTP 500 InternalError",
                                            "dst: request timed out"};
  if (fault_roll < err) {
    d.action = FaultDecision::Action::kFail;
    d.error = Status::Unavailable(kErrors[which]);
  } else if (fault_roll < err + lost) {
    d.action = FaultDecision::Action::kLoseAck;
    d.error = Status::Unavailable("dst: connection reset before the reply");
  }
  if (kind == OpKind::kGet) {
    // Three draws per GET from the body stream, whatever is enabled.
    const uint64_t body_roll = inc.body_rng.Below(kPpm), how = inc.body_rng.Below(3);
    const uint64_t where = inc.body_rng.Next();
    if (d.action == FaultDecision::Action::kPass && body_roll < k_.get_damage_ppm) {
      static constexpr FaultDecision::Action kHow[] = {FaultDecision::Action::kFlipBit,
                                                       FaultDecision::Action::kTornBody,
                                                       FaultDecision::Action::kShortBody};
      d.action = kHow[how];
      d.corrupt_from_end = where;
    }
  }
  return d;
}

}  // namespace portal::dst
