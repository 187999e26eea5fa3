#include "trace/replay.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>

#include "env/async.h"

namespace portal::trace {

// --- scheduler ---

bool ReplayScheduler::CanStart(const TraceOp& op) const {
  if (running_.size() >= iodepth_) return false;
  if (op.type == OpType::kFlush) return running_.empty();
  for (const Running& r : running_) {
    if (r.type == OpType::kFlush) return false;
    if (IsWriteLike(r.type) && r.offset < op.end() && op.offset < r.end) return false;
  }
  return true;
}

void ReplayScheduler::Started(uint64_t id, const TraceOp& op) {
  running_.push_back({id, op.offset, op.end(), op.type});
}

void ReplayScheduler::Completed(uint64_t id) {
  for (size_t i = 0; i < running_.size(); ++i) {
    if (running_[i].id == id) {
      running_[i] = running_.back();
      running_.pop_back();
      return;
    }
  }
  PORTAL_ASSERT(false, "ReplayScheduler::Completed for an op not running");
}

std::vector<size_t> ReplayOrder(const Trace& trace) {
  std::vector<size_t> order(trace.ops.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return trace.ops[a].StartNs() < trace.ops[b].StartNs();
  });
  return order;
}

// --- replay ---

namespace {

// Shared by the issuing loop and the completions (which run on any executor thread).
struct ReplayState {
  explicit ReplayState(Env& env, uint32_t iodepth) : changed(env), done(env), sched(iodepth) {}
  Notifier changed;
  WaitGroup done;
  std::mutex mu;
  ReplayScheduler sched;  // GUARDED_BY(mu)
  ReplayResult result;    // GUARDED_BY(mu)
  uint64_t completed = 0;  // GUARDED_BY(mu)
  uint64_t last_end_ns = 0;  // GUARDED_BY(mu)
};

void Account(ReplayResult& r, const TraceOp& op) {
  size_t t = static_cast<size_t>(op.type);
  ++r.ops;
  ++r.ops_by_type[t];
  if (!op.success) ++r.recorded_failures;
  switch (op.type) {
    case OpType::kRead: r.bytes_read += op.length; break;
    case OpType::kWrite: r.bytes_written += op.length; break;
    case OpType::kTrim:
    case OpType::kWriteZeroes: r.bytes_zeroed += op.length; break;
    default: break;
  }
}

}  // namespace

Task<ReplayResult> Replay(Env& env, const Trace& trace, ReplayTarget& target,
                          ReplayOptions options) {
  auto state = std::make_shared<ReplayState>(env, options.iodepth);
  std::vector<size_t> order = ReplayOrder(trace);
  const uint64_t total = order.size();
  const uint64_t t0 = env.NowNanos();
  const uint64_t first_start = order.empty() ? 0 : trace.ops[order.front()].StartNs();
  uint64_t next_progress = t0 + options.progress_interval_ns;
  auto maybe_progress = [&] {
    if (!options.progress) return;
    uint64_t now = env.NowNanos();
    if (now < next_progress) return;
    next_progress = now + options.progress_interval_ns;
    uint64_t completed;
    {
      std::lock_guard lock(state->mu);
      completed = state->completed;
    }
    options.progress(completed, total);
  };

  for (uint64_t id = 0; id < total; ++id) {
    const TraceOp& op = trace.ops[order[id]];
    if (options.original_pace) {
      uint64_t due = t0 + (op.StartNs() - first_start);
      uint64_t now = env.NowNanos();
      if (due > now) co_await SleepFor(env, due - now);
    }
    for (;;) {
      uint64_t seen = state->changed.epoch();
      {
        std::lock_guard lock(state->mu);
        if (state->sched.CanStart(op)) {
          state->sched.Started(id, op);
          break;
        }
      }
      maybe_progress();
      co_await state->changed.Wait(seen, options.progress ? options.progress_interval_ns
                                                          : Notifier::kForever);
    }
    state->done.Add();
    uint64_t issued = env.NowNanos();
    Start(target.Execute(op), [state, &env, &op, id, issued](Status st) {
      uint64_t end = env.NowNanos();
      {
        std::lock_guard lock(state->mu);
        state->sched.Completed(id);
        ReplayResult& r = state->result;
        Account(r, op);
        r.latency[static_cast<size_t>(op.type)].Record(end - issued);
        if (!st.ok()) {
          ++r.failures;
          ++r.failures_by_type[static_cast<size_t>(op.type)];
          if (r.first_error.ok()) {
            r.first_error = st.WithContext(std::string(OpTypeName(op.type)));
          }
        }
        ++state->completed;
        state->last_end_ns = std::max(state->last_end_ns, end);
      }
      state->changed.NotifyAll();
      state->done.Done();
    });
    maybe_progress();
  }
  co_await state->done.Wait();
  std::lock_guard lock(state->mu);
  ReplayResult r = std::move(state->result);
  r.duration_ns = state->last_end_ns > t0 ? state->last_end_ns - t0 : 0;
  co_return r;
}

// --- write data ---

WritePattern::WritePattern() : data_(kMaxPatternLength + kWindow) {
  uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift64*: fixed seed, same bytes every run
  for (size_t i = 0; i + 8 <= data_.size(); i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t w = x * 0x2545f4914f6cdd1dull;
    std::memcpy(data_.data() + i, &w, 8);
  }
}

std::span<const uint8_t> WritePattern::Get(uint64_t offset, size_t length) const {
  PORTAL_ASSERT(length <= kMaxPatternLength, "WritePattern: length too large");
  // Anywhere in the pattern the length fits, by a hash of the sector: writes at different
  // offsets do not repeat each other's bytes, so lz4 (segments on file:// and s3://) finds
  // nothing to reuse between them, as with real data. (Starts within one 64 KiB window let
  // it compress 4 KiB writes 50x, and the store saw a fiftieth of the bytes.)
  uint64_t h = (offset / 512 + 1) * 0x9e3779b97f4a7c15ull;
  h ^= h >> 29;
  size_t start = static_cast<size_t>(h % (data_.size() - length + 1));
  return {data_.data() + start, length};
}

}  // namespace portal::trace
