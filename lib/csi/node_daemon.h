// NodeDaemon: what the Node service asks of the portalbd daemon on its own machine (the
// DaemonSet's daemon, which attaches volumes to /dev/nbdX and serves them; csi-design.md,
// docs/control.md). An interface so unit tests script the daemon; ControlNodeDaemon is
// the real one, one control connection per call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csi/driver.h"
#include "util/status.h"

namespace portal::csi {

// A volume attached to a kernel NBD device by the daemon (`device` object of device.*).
struct AttachedDevice {
  std::string path;    // "/dev/nbd0"
  std::string volume;  // portalbd volume name
  uint64_t size_bytes = 0;
  bool read_only = false;
  // The kernel has a live connection to the daemon (false while it waits for the daemon
  // to come back and reattach it).
  bool connected = true;
};

class NodeDaemon {
 public:
  virtual ~NodeDaemon() = default;
  // volume.open: the daemon serves the volume (OK when it does already), which fences
  // any other daemon that served it. NotFound for an unknown volume.
  virtual Status Open(const std::string& volume) = 0;
  // device.attach of a volume the daemon serves: attaches it or returns the device it is
  // already attached to.
  virtual Result<AttachedDevice> Attach(const std::string& volume, bool read_only) = 0;
  // device.detach by volume; OK when it is not attached.
  virtual Status Detach(const std::string& volume) = 0;
  // device.list.
  virtual Result<std::vector<AttachedDevice>> List() = 0;
  // volume.release: the daemon closes the volume (durable first) so another node may
  // open it. OK when the daemon does not serve it.
  virtual Status Release(const std::string& volume) = 0;
  // volume.get's `fenced`: another daemon opened the volume since this one did.
  virtual Result<bool> Fenced(const std::string& volume) = 0;
};

class ControlNodeDaemon final : public NodeDaemon {
 public:
  explicit ControlNodeDaemon(DaemonEndpoint endpoint) : endpoint_(std::move(endpoint)) {}
  Status Open(const std::string& volume) override;
  Result<AttachedDevice> Attach(const std::string& volume, bool read_only) override;
  Status Detach(const std::string& volume) override;
  Result<std::vector<AttachedDevice>> List() override;
  Status Release(const std::string& volume) override;
  Result<bool> Fenced(const std::string& volume) override;

 private:
  DaemonEndpoint endpoint_;
};

// A daemon error reply as a Status: "not_found" -> NotFound, "busy" -> Busy, ...; codes
// without a Status counterpart (bad_request, already_exists, ...) -> IOError naming it.
Status StatusFromDaemonError(std::string_view code, std::string_view message);

}  // namespace portal::csi
