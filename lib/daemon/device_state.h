// The daemon's record of the kernel NBD devices it attached ([device] state_file), so
// that a restarted daemon finds them and hands the kernel new connections
// (daemon/devices.h). One JSON document, replaced atomically (temporary file, fsync,
// rename, fsync of the directory):
//
//   {"version":1,"devices":[{"index":0,"volume":"db","read_only":false,
//                            "backend":"portalbd:db"}]}
//
// A missing file is no devices; a file that does not parse, or holds a bad record, is
// Corruption naming the path (the daemon then refuses to start rather than forget
// devices the kernel still queues I/O for).
#pragma once

#include <string>
#include <vector>

#include "util/status.h"

namespace portal::daemon {

struct DeviceRecord {
  int index = -1;  // /dev/nbdN
  std::string volume;
  bool read_only = false;
  std::string backend;  // the kernel's backend identifier (nbdlink.h)
  friend bool operator==(const DeviceRecord&, const DeviceRecord&) = default;
};

Result<std::vector<DeviceRecord>> LoadDeviceState(const std::string& path);
// Creates the parent directory if missing.
Status SaveDeviceState(const std::string& path, const std::vector<DeviceRecord>& records);

// The backend identifier the daemon gives a device serving `volume`.
std::string DeviceBackend(const std::string& volume);

}  // namespace portal::daemon
