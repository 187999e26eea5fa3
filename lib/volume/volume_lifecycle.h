// VolumeLifecycle: where LsmVolume stands between open and destruction, private to it.
// Fenced: another writer owns the volume (or a crash was simulated); nothing more is
// acknowledged. Closing/stop: Close() began / the uploader and maintenance loop are
// told to drain and exit. Stalled: writers wait for room (max_unflushed_bytes).
//
// Not thread-safe: every field is GUARDED_BY(LsmVolume::mu_).
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"
#include "volume/volume.h"

namespace portal::volume {

struct VolumeLifecycle {
  bool fenced = false;
  std::string fenced_reason;
  bool closing = false;  // Close() was called (a second call is refused)
  bool stop = false;     // loops drain and exit; set by Close() and a failed Open()
  // The earliest GiveUpAt deadline asked for (volume_stop.cc).
  uint64_t give_up_deadline_ns = Volume::kNoDeadline;
  bool stalled = false;       // writers are waiting for room (logged once per stall)
  uint64_t write_stalls = 0;  // stalls so far (stats)

  // The error every operation fails with once fenced.
  Status FencedError() const { return Status::IOError("volume is fenced: " + fenced_reason); }
};

}  // namespace portal::volume
