// DeviceSet: kernel NBD devices the daemon attaches itself (docs/devices.md). For each,
// the daemon makes a socketpair, hands one end to the kernel through netlink
// (nbdlink/nbdlink.h: CONNECT with the export's transmission flags, so FLUSH, FUA and
// TRIM reach the volume) and serves the other end on its NBD server, starting in the
// transmission phase (nbd::Server::Adopt). A device therefore lives as long as the
// daemon, not as long as whoever asked for it (the CSI node plugin), and survives the
// daemon itself:
//
// - The attachments are recorded in [device] state_file (device_state.h), written
//   before the attach is answered.
// - Clean stop: the NBD server answers what has started and closes; the volumes flush;
//   the kernel devices stay configured and queue I/O for reattach_timeout_ms.
// - Start (Restore): every recorded device the kernel still has configured gets a new
//   socket with NBD_CMD_RECONFIGURE (the kernel resends unanswered requests on it after
//   io_timeout_ms); records of devices that are gone are dropped.
// - A connection that ends while the daemon runs (the kernel timed a request out and
//   dropped it, or refused a new socket because the old one was not dead yet) is replaced
//   the same way, retried with backoff while the kernel keeps the device configured.
// - Detach: fsync of the device, a volume flush, NBD_CMD_DISCONNECT, the record removed.
//
// Thread-safe. mu_ is held across netlink calls, which could wait on I/O the kernel
// sends to our own NBD server (a partition scan), so it is taken on the blocking pool
// only, never on an executor thread. `catalog`, `server` and `env` must outlive the set,
// and the set must live until `env` stopped (reconnections are scheduled on it).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/protocol.h"
#include "daemon/device_state.h"
#include "env/env.h"
#include "env/task.h"
#include "nbd/export.h"
#include "nbd/server.h"
#include "util/status.h"

namespace portal::daemon {

class DeviceSet {
 public:
  struct Options {
    std::string state_file;
    uint64_t io_timeout_ms = 30'000;
    uint64_t reattach_timeout_ms = 120'000;  // 0: off
    // Whether a volume was taken over by another daemon (fenced). A detach of a fenced
    // volume's device skips the flush that cannot succeed any more: nothing it still
    // holds can become durable here (and nothing unflushed was acknowledged as durable),
    // so the device is disconnected anyway rather than left behind forever.
    std::function<bool(const std::string& volume)> fenced;
  };

  DeviceSet(Env& env, nbd::ExportCatalog& catalog, nbd::Server& server, Options options);
  DeviceSet(const DeviceSet&) = delete;
  DeviceSet& operator=(const DeviceSet&) = delete;

  // At start, after the server started: reads the state file (a damaged one is an
  // error: the daemon must not forget devices the kernel queues I/O for) and reattaches.
  Status Restore();

  // Idempotent: a volume already attached answers with its device (an error if `device`
  // names another one, or `read_only` differs).
  Task<Result<control::DeviceEntry>> Attach(std::string volume, std::string device, bool read_only);
  // By device path or volume name; nullopt when nothing was attached there.
  Task<Result<std::optional<control::DeviceEntry>>> Detach(std::string device, std::string volume);
  Task<std::vector<control::DeviceEntry>> List();
  // After a resize of `volume`: its device (if any) shows the new size.
  Task<Status> Resized(std::string volume, uint64_t size_bytes);
  // Clean stop: connections that end from now on are not replaced.
  void Stop();
  // After the NBD server shut down: lets go of the volumes (before they close).
  void Close();

 private:
  struct Device {
    DeviceRecord rec;
    std::shared_ptr<nbd::OpenExport> exp;  // the current connection's (keeps the volume)
    std::weak_ptr<nbd::AdoptedConnection> conn;
    uint64_t size_bytes = 0;  // what the kernel device shows
    uint64_t generation = 0;  // the current connection's id (0: none)
    bool connected = false;
    bool detaching = false;
    uint32_t retries = 0;
  };

  // A new connection for `d`: CONNECT (d.rec.index may be -1) or RECONFIGURE. mu_ held.
  Status ServeLocked(Device& d, bool reconfigure);
  void OnClosed(uint64_t generation);  // on the blocking pool
  void ScheduleReconnectLocked(Device& d);
  void Reconnect(int index, uint64_t generation);
  Status SaveLocked();
  Status DoResize(const std::string& volume, uint64_t size_bytes);  // takes mu_
  control::DeviceEntry EntryLocked(const Device& d) const;

  Env& env_;
  nbd::ExportCatalog& catalog_;
  nbd::Server& server_;
  const Options options_;
  mutable std::mutex mu_;
  std::map<int, Device> devices_;  // GUARDED_BY(mu_), by kernel index
  uint64_t next_generation_ = 1;   // GUARDED_BY(mu_)
  bool stopping_ = false;          // GUARDED_BY(mu_)
};

}  // namespace portal::daemon
