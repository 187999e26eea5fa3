#include "volume/read_ahead.h"

#include <algorithm>

namespace portal::volume {

ReadAheadOptions ReadAheadOptionsFor(const VolumeOptions& options) {
  ReadAheadOptions o;
  o.max_bytes = options.read_partial_raw_chunks ? 0 : options.read_ahead_max_bytes;
  o.max_window_bytes = std::min<uint64_t>(32ull << 20, options.block_cache_size_bytes / 4);
  o.max_get_bytes = std::min<uint64_t>(8ull << 20, o.max_window_bytes / 4);
  return o;
}

ReadAhead::ReadAhead(Env& env, uint32_t block_size, ReadAheadOptions options)
    : env_(env), block_size_(block_size), options_(options) {}

std::optional<std::pair<uint64_t, uint64_t>> ReadAhead::OnRead(uint64_t first, uint64_t end,
                                                               uint64_t device_blocks) {
  if (!enabled() || end <= first) return std::nullopt;
  const uint64_t len = end - first;
  // A window never holds more than the budget allows in flight at once.
  const uint64_t max_window =
      std::max<uint64_t>(1, std::min(options_.max_window_bytes, options_.max_bytes) / block_size_);
  std::lock_guard lock(mu_);
  ++tick_;
  Stream* s = nullptr;
  for (Stream& c : streams_) {
    // Continues a stream: starts at its end, or a little before or after it (reads of one
    // stream in flight together complete and arrive slightly out of order).
    const uint64_t slack = std::max(len, c.last_len);
    if (c.next != UINT64_MAX && first + slack >= c.next && first <= c.next + slack) {
      s = &c;
      break;
    }
  }
  if (s == nullptr) {  // a new stream takes the least recently used slot
    s = &*std::min_element(streams_.begin(), streams_.end(),
                           [](const Stream& a, const Stream& b) { return a.used < b.used; });
    *s = Stream{};
    s->next = end;
    s->ahead = end;
    s->last_len = len;
    s->reads = 1;
    s->used = tick_;
    return std::nullopt;
  }
  s->used = tick_;
  if (end <= s->next) return std::nullopt;  // read again behind the stream's end: no progress
  s->next = end;
  s->last_len = len;
  ++s->reads;
  if (s->window == 0) {
    s->window = std::min(max_window, std::max(kMinWindowBytes / block_size_, 2 * len));
  }
  const uint64_t from = std::max(s->ahead, s->next);
  // Refill the window once one GET's worth of it (at most half of it) was read: several
  // GETs stay in flight all the time, not in bursts.
  const uint64_t step =
      std::min(s->window / 2, std::max<uint64_t>(1, options_.max_get_bytes / block_size_));
  if (from >= device_blocks || from - s->next > s->window - step) return std::nullopt;
  const uint64_t to = std::min(device_blocks, s->next + s->window);
  s->ahead = to;
  s->window = std::min(max_window, 2 * s->window);
  if (to <= from) return std::nullopt;
  return std::make_pair(from, to);
}

bool ReadAhead::Reserve(uint64_t bytes) {
  uint64_t cur = in_flight_.load(std::memory_order_relaxed);
  do {
    if (cur + bytes > options_.max_bytes) return false;
  } while (!in_flight_.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
  return true;
}

void ReadAhead::Release(uint64_t bytes) { in_flight_.fetch_sub(bytes, std::memory_order_relaxed); }

uint64_t ReadAhead::HedgeNs() const {
  return std::max(kMinHedgeNs, 4 * get_ns_avg_.load(std::memory_order_relaxed));
}

void ReadAhead::NoteGetNanos(uint64_t ns) {
  // A moving average (1/8 weight): races between two updates lose one sample, harmlessly.
  uint64_t avg = get_ns_avg_.load(std::memory_order_relaxed);
  get_ns_avg_.store(avg == 0 ? ns : avg - avg / 8 + ns / 8, std::memory_order_relaxed);
}

}  // namespace portal::volume
