#include "nbd/peer_deadline.h"

#include <algorithm>

namespace portal::nbd {
namespace {

// Restarts `since` when the wait `now_id` is a new one; returns its deadline (0: none).
uint64_t Track(uint64_t last_id, uint64_t now_id, uint64_t now_ms, uint64_t timeout_ms,
               uint64_t* since) {
  if (now_id == 0 || timeout_ms == 0) return 0;
  if (now_id != last_id) *since = now_ms;
  return *since + timeout_ms;
}

}  // namespace

uint64_t PeerDeadline::Update(const PeerWait& w, uint64_t now_ms) {
  const uint64_t deadlines[] = {
      Track(last_.request, w.request, now_ms, options_.request_timeout_ms, &request_since_ms_),
      Track(last_.reply, w.reply, now_ms, options_.request_timeout_ms, &reply_since_ms_),
      Track(last_.idle, w.idle, now_ms, options_.idle_timeout_ms, &idle_since_ms_),
  };
  last_ = w;
  uint64_t earliest = 0;
  for (uint64_t d : deadlines) {
    if (d != 0) earliest = earliest == 0 ? d : std::min(earliest, d);
  }
  return earliest;
}

const char* PeerDeadline::Expired(const PeerWait& w, uint64_t now_ms) {
  Update(w, now_ms);
  if (w.request != 0 && now_ms >= request_since_ms_ + options_.request_timeout_ms) {
    return "request";
  }
  if (w.reply != 0 && now_ms >= reply_since_ms_ + options_.request_timeout_ms) return "reply";
  if (w.idle != 0 && options_.idle_timeout_ms != 0 &&
      now_ms >= idle_since_ms_ + options_.idle_timeout_ms) {
    return "idle";
  }
  return nullptr;
}

}  // namespace portal::nbd
