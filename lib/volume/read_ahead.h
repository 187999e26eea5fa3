// ReadAhead: finds sequential streams among a volume's client reads and says which device
// blocks to fetch before they are asked for, and bounds the bytes those fetches hold.
//
// Streams: a small table (kStreams entries, least recently used replaced) of where recent
// reads ended. A read that starts at (or within one read's length of) a stream's end
// continues it; the second read of a stream starts read-ahead. Each stream has a window
// that starts at kMinWindowBytes (or two reads' length) and doubles with every read-ahead it
// triggers up to max_window_bytes; the window is refilled as soon as the reader has used
// one GET's worth of it (max_get_bytes, at most half the window), so several GETs stay in
// flight all along. A 4 KiB random read never triggers any, and one stream of 1 MiB reads
// soon keeps a window of several large ranged GETs in flight (SegmentReader::Prefetch).
//
// Budget: read-ahead GETs in flight hold at most max_bytes (their decoded chunk bytes);
// what does not fit is not fetched (Reserve fails; the reader's own GETs catch up). What
// was fetched goes into the block cache, which bounds what stays. max_bytes 0 disables
// read-ahead.
//
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "env/env.h"
#include "volume/options.h"

namespace portal::volume {

// Read-ahead counters (shown as VolumeStats::read_ahead_*). Shared with every cached chunk
// that points at them: a block cache shared by volumes outlives each volume.
struct ReadAheadCounters {
  std::atomic<uint64_t> gets{0};         // read-ahead GETs that succeeded
  std::atomic<uint64_t> bytes{0};        // bytes those GETs returned
  std::atomic<uint64_t> hits{0};         // chunks read ahead that a read then used
  std::atomic<uint64_t> wasted{0};       // chunks read ahead and evicted (or replaced) unread
  std::atomic<uint64_t> failed{0};       // read-aheads that failed (dropped, never retried)
  std::atomic<uint64_t> over_budget{0};  // read-aheads cut short by the in-flight bound
};

struct ReadAheadOptions {
  uint64_t max_bytes = 64ull << 20;  // in flight at once; 0: no read-ahead
  uint64_t max_window_bytes = 32ull << 20;
  uint64_t max_get_bytes = 8ull << 20;
};

// From the volume's options: read_ahead_max_bytes; a window of at most 32 MiB and a quarter
// of the block cache (what is read ahead must still be there when the reader arrives); GETs
// of at most 8 MiB (AWS suggests 8-16 MB ranged GETs on parallel connections) and a quarter
// of the window, so that 4 are in flight in a full window besides the small GETs of
// segments overwritten data lies in; each request costs the server too (s3rver on a busy
// machine is bound by requests, not bytes). None on memory:// (read_partial_raw_chunks:
// there is no chunk to fetch).
ReadAheadOptions ReadAheadOptionsFor(const VolumeOptions& options);

class ReadAhead {
 public:
  static constexpr size_t kStreams = 8;
  static constexpr uint64_t kMinWindowBytes = 128 * 1024;

  ReadAhead(Env& env, uint32_t block_size, ReadAheadOptions options);
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  bool enabled() const { return options_.max_bytes > 0; }
  const ReadAheadOptions& options() const { return options_; }
  ReadAheadCounters& counters() { return *counters_; }
  const std::shared_ptr<ReadAheadCounters>& shared_counters() { return counters_; }
  Env& env() { return env_; }

  // A client read of blocks [first, end) of a device of `device_blocks` blocks: the blocks
  // to read ahead now, if any.
  std::optional<std::pair<uint64_t, uint64_t>> OnRead(uint64_t first, uint64_t end,
                                                      uint64_t device_blocks);

  // Takes `bytes` of the in-flight budget; false (nothing taken) when they do not fit.
  bool Reserve(uint64_t bytes);
  void Release(uint64_t bytes);
  uint64_t in_flight_bytes() const { return in_flight_.load(std::memory_order_relaxed); }

  // How long a client read waits for a read-ahead GET that holds a chunk it needs before
  // fetching the chunk itself: a read-ahead GET is tried once, but a store may retry
  // inside one call (S3's client does), and the client must not wait behind that.
  // Four times the recent read-ahead GET duration, and at least kMinHedgeNs.
  uint64_t HedgeNs() const;
  void NoteGetNanos(uint64_t ns);
  static constexpr uint64_t kMinHedgeNs = 50 * kNanosPerMilli;

 private:
  struct Stream {
    uint64_t next = UINT64_MAX;  // block after the stream's last read (UINT64_MAX: unused)
    uint64_t ahead = 0;          // read ahead up to here
    uint64_t window = 0;         // blocks
    uint64_t last_len = 0;
    uint64_t reads = 0;
    uint64_t used = 0;  // recency tick
  };

  Env& env_;
  const uint64_t block_size_;
  const ReadAheadOptions options_;
  std::shared_ptr<ReadAheadCounters> counters_ = std::make_shared<ReadAheadCounters>();
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> get_ns_avg_{0};
  std::mutex mu_;
  std::array<Stream, kStreams> streams_;  // GUARDED_BY(mu_)
  uint64_t tick_ = 0;                     // GUARDED_BY(mu_)
};

}  // namespace portal::volume
