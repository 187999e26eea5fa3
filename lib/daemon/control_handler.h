// ControlHandler: what portalbd does with a control request (control/server.h): snapshot
// create, list, get, delete, restore on the volume, and status. Errors from the volume
// become error replies with its Status code; a duplicate name is "already_exists". A name
// the volume refuses (volume::ValidateSnapshotName) is "invalid_argument" whatever the op,
// before the volume is consulted. Replies carry control's own snapshot type, converted
// from the volume's.
//
// Thread-safe once attached. Attach() before the control server starts accepting; the
// volume must stay open while requests may run (the daemon stops the control server
// before it closes the volume).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "control/server.h"
#include "volume/snapshot.h"  // ValidateSnapshotName
#include "volume/volume.h"

namespace portal::daemon {

class ControlHandler final : public control::Handler {
 public:
  using StatusFn = std::function<control::DaemonStatus()>;

  void Attach(std::shared_ptr<volume::Volume> volume, StatusFn status) {
    volume_ = std::move(volume);
    status_ = std::move(status);
  }

  Task<control::Reply> Handle(control::Request request) override;

 private:
  Task<control::Reply> Dispatch(const control::Request& request);
  Task<control::Reply> Create(std::string name);

  std::shared_ptr<volume::Volume> volume_;
  StatusFn status_;
};

}  // namespace portal::daemon
