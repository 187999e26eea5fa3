// Stopping: Close, and the deadline that bounds it. Until the deadline, a stop makes
// everything durable, retrying the store as long as it takes; at the deadline the volume
// gives up (give_up_ is cancelled): retries end mid-backoff, whoever waits for
// durability fails, and Close reports how many written bytes were left behind. Giving up
// never acknowledges anything: a FLUSH succeeds only once the uploads it needs settled.
#include <fmt/format.h>

#include "util/rfc3339.h"
#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {
auto Log() { return log::Get("portalbd::volume"); }
}  // namespace

void LsmVolume::GiveUpAt(uint64_t deadline_ns) {
  const uint64_t now = env_.NowNanos();
  {
    std::lock_guard lock(mu_);
    if (deadline_ns >= lifecycle_.give_up_deadline_ns) return;
    lifecycle_.give_up_deadline_ns = deadline_ns;
  }
  if (deadline_ns <= now) return GiveUpNow();
  // A weak reference: a volume closed in time is destroyed without waiting for this.
  env_.PostAfter(deadline_ns - now, [weak = weak_from_this()] {
    if (auto v = weak.lock()) v->GiveUpNow();
  });
}

void LsmVolume::GiveUpNow() {
  if (give_up_.cancelled()) return;
  give_up_.Cancel();  // retry loops and their backoffs
  std::string left;
  {
    std::lock_guard lock(mu_);
    left = NotDurableSummaryLocked();
    // FLUSH and FUA waiters: what is not durable now never will be acknowledged.
    uploader_.durable().Fail(GaveUpLocked());
    UpdateBudgetLocked();  // its buffers stop counting; stalled writers fail
  }
  if (!left.empty()) Log()->warn("stop deadline passed: giving up on {}", left);
  uploader_.Wake();      // its retries end (give_up_), then it exits
  changed_.NotifyAll();  // maintenance exits
}

uint64_t LsmVolume::UnflushedBytesLocked() const {
  return uploader_.ActiveBytesLocked() + uploader_.SealedBytesLocked();
}

std::string LsmVolume::NotDurableSummaryLocked() const {
  if (uploader_.EmptyLocked()) return "";
  std::string why;
  const StoreHealth::State& h = uploader_.HealthLocked();
  if (h.failing) {
    why = fmt::format("store failing since {}: {}", FormatRfc3339(h.since_wall_ns), h.error);
  } else if (lifecycle_.fenced) {
    why = "volume fenced: " + lifecycle_.fenced_reason;
  } else if (give_up_.cancelled()) {
    why = "the stop deadline passed before they were uploaded";
  } else {
    why = "not yet uploaded";
  }
  return fmt::format("{} bytes not durable ({})", UnflushedBytesLocked(), why);
}

std::string LsmVolume::NotDurableSummary() {
  std::lock_guard lock(mu_);
  return NotDurableSummaryLocked();
}

Status LsmVolume::GaveUpLocked() const {
  std::string left = NotDurableSummaryLocked();
  return Status::IOError("gave up at the stop deadline" + (left.empty() ? "" : ": " + left));
}

Task<Status> LsmVolume::Close(uint64_t deadline_ns) {
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.closing) co_return Status::Shutdown("volume already closed");
    lifecycle_.closing = true;
  }
  GiveUpAt(deadline_ns);
  Status st = co_await Flush();
  {
    std::lock_guard lock(mu_);
    lifecycle_.stop = true;
    uploader_.StopLocked();  // drains what is buffered, then exits
  }
  changed_.NotifyAll();  // maintenance exits
  co_await loops_.Wait();
  // The uploader drains every buffer before it exits, unless fenced or given up: what is
  // left is written data that will never be durable.
  std::lock_guard lock(mu_);
  std::string left = NotDurableSummaryLocked();
  if (!left.empty()) co_return Status::IOError(left);
  co_return st;
}

}  // namespace portal::volume
