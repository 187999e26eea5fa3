// ControlHandler: what portalbd does with a control request (control/server.h): snapshot
// create, list, get, delete, restore on a served volume (the request's `volume`, "" for
// the default one); volume create, list, get, delete, resize, open, release on the
// daemon's VolumeSet; and status. Errors from the volume become error replies with its
// Status code; a duplicate name is "already_exists"; every error message names the
// volume. device.attach, detach and list act on the daemon's kernel NBD devices
// (daemon/devices.h); a resize of an attached volume resizes its device. volume.publish,
// volume.unpublish and node.get read and write the store root's attachment and node
// records (daemon/attachments.h). A snapshot name the volume refuses
// (volume::ValidateSnapshotName) is "invalid_argument" whatever the op, before the volume
// is consulted. Replies carry control's own wire types, converted from the volume's.
//
// Thread-safe once attached. Attach() before the control server starts accepting; the
// set must stay alive while requests may run (the daemon stops the control server before
// it closes the volumes).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "control/server.h"
#include "daemon/devices.h"
#include "daemon/volume_set.h"
#include "volume/snapshot.h"  // ValidateSnapshotName
#include "volume/volume.h"

namespace portal::daemon {

class ControlHandler final : public control::Handler {
 public:
  using StatusFn = std::function<control::DaemonStatus()>;

  void Attach(VolumeSet* volumes, StatusFn status) {
    volumes_ = volumes;
    status_ = std::move(status);
  }

  // Kernel NBD devices (device.*); null: those ops answer unavailable.
  void AttachDevices(DeviceSet* devices) { devices_ = devices; }

  Task<control::Reply> Handle(control::Request request) override;

 private:
  Task<control::Reply> Dispatch(const control::Request& request);
  Task<control::Reply> DispatchSnapshot(const control::Request& request, volume::Volume& v,
                                        const std::string& volume_name);
  Task<control::Reply> DispatchVolume(const control::Request& request);
  Task<control::Reply> DispatchDevice(const control::Request& request);
  Task<control::Reply> Create(volume::Volume& v, const std::string& volume_name,
                              std::string name);

  VolumeSet* volumes_ = nullptr;
  DeviceSet* devices_ = nullptr;
  StatusFn status_;
};

// A served volume as control replies show it.
control::VolumeEntry VolumeEntryOf(const ServedVolume& v);

}  // namespace portal::daemon
