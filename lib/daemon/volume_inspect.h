// volume.inspect (docs/control.md): what the store says of a volume, without opening it.
// Opening a volume fences whoever serves it, so the CSI controller, which must not
// disturb a volume a node has attached, reads instead: the registry record, the newest
// manifest (size, block size, epoch, snapshot list) and each snapshot's object (its size
// and the data it pins). A volume served here is described from the live volume.
#pragma once

#include <string>
#include <vector>

#include "control/protocol.h"
#include "daemon/volume_set.h"
#include "env/task.h"
#include "util/status.h"

namespace portal::daemon {

// One volume, with `snapshot_list` filled. NotFound for a name the registry does not
// hold, or one being deleted (a deleted volume kept for its clones is gone for users).
Task<Result<control::VolumeEntry>> InspectVolume(VolumeSet& set, std::string name);

// Every registered volume not being deleted, sorted by name. A volume whose objects
// cannot be read is listed from its record (its size as created, no snapshots) rather
// than failing the whole list; the log names it.
Task<Result<std::vector<control::VolumeEntry>>> InspectAllVolumes(VolumeSet& set);

}  // namespace portal::daemon
