// Recorder: turns finished requests from any number of connections into one trace file,
// streamed to disk as they finish (memory does not grow with the trace).
//
// Times: the caller passes Env::NowNanos() values; the recorder stores them relative to
// its start. Ops are numbered and written in the order Record is called, which is
// completion order, as the original portalbd's recorder did.
//
// Thread-safe (one mutex around the writer).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "trace/nbd_tap.h"
#include "trace/trace_format.h"
#include "util/status.h"

namespace portal::trace {

class Recorder {
 public:
  struct Options {
    std::string path;
    std::string workload = "unnamed";
    bool compat = false;  // only the original's five op types
  };

  // Creates the file and writes its header. `start_ns` (monotonic) is time zero of the
  // trace; `start_unix_ns` becomes start_time.
  static Result<std::unique_ptr<Recorder>> Create(Options options, uint64_t start_ns,
                                                  int64_t start_unix_ns);
  ~Recorder();

  // The export size the upstream announced. The first call sets device_size_bytes;
  // returns false if `size_bytes` differs from it (the trace keeps the first).
  bool SetDeviceSize(uint64_t size_bytes);
  // Appends one finished request (requests without a trace type are ignored).
  // `conn` numbers the connection (from 1).
  Status Record(uint32_t conn, const TappedRequest& request);
  // Writes the trailer and closes the file; later Records fail. `now_ns` ends the trace.
  Status Finish(uint64_t now_ns);

  const std::string& path() const { return options_.path; }
  uint64_t ops_written() const;
  uint64_t ops_dropped() const;  // by compat mode
  std::array<uint64_t, kNumOpTypes> counts() const;
  // " Read=10 Write=3": the types recorded so far, for log lines ("" when none).
  std::string CountsByType() const;

 private:
  explicit Recorder(Options options, uint64_t start_ns);

  const Options options_;
  const uint64_t start_ns_;
  mutable std::mutex mu_;
  TraceWriter writer_;                               // GUARDED_BY(mu_)
  std::optional<uint64_t> device_size_;              // GUARDED_BY(mu_)
  std::array<uint64_t, kNumOpTypes> counts_{};       // GUARDED_BY(mu_)
  bool finished_ = false;                            // GUARDED_BY(mu_)
};

}  // namespace portal::trace
