// Reading a volume's state from its store without opening it: no new epoch, no fence, no
// write. For a daemon describing a volume another daemon may be serving (volume.inspect,
// docs/control.md). What it reads may be a moment old by the time it is used.
#pragma once

#include <optional>

#include "env/env.h"
#include "env/task.h"
#include "objstore/object_store.h"
#include "util/status.h"
#include "volume/manifest.h"

namespace portal::crypto {
class Keyring;
}

namespace portal::volume {

// The newest manifest of the volume whose objects are in `store` (its root, or a named
// volume's view); nullopt when there is none yet. `keyring` as for VolumeOptions.
Task<Result<std::optional<Manifest>>> ReadNewestManifest(Env& env, objstore::ObjectStore& store,
                                                         const crypto::Keyring* keyring);

}  // namespace portal::volume
