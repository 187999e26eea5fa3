// The volume's side of the clone protocol (clone.h), private to lib/volume/.
#pragma once

#include <string>

#include "env/async.h"
#include "env/env.h"
#include "objstore/object_store.h"
#include "util/status.h"
#include "volume/clone.h"
#include "volume/manifest.h"

namespace portal::volume {

// Writes `record`'s reference into its parent's store, then checks that the parent is
// not deleted and the snapshot neither deleted nor being deleted; on failure removes
// the reference again (and sweeps a deleted parent). Idempotent: CreateClone and a new
// clone's first open both run it.
Task<Status> ConfirmCloneReference(Env& env, const VolumeResolver& resolve,
                                   const CloneRecord& record,
                                   const crypto::Keyring* keyring = nullptr);

// Before a snapshot delete commits: marks snapshot `id` deleting with the mark of the
// writer of `epoch`, then lists its references; any reference removes the mark again and
// refuses (Busy naming the clones), as does a failure (the error). The mark stays until
// FinishSnapshotDelete (after the snapshot object is deleted), which also withdraws it
// when the delete's commit surely did not land. A mark left behind (a crash, a commit
// whose outcome is unknown) refuses clones only while its writer is the latest: once a
// newer writer's manifest still lists the snapshot, creators ignore it (its writer can
// commit nothing more), and that writer's open clears it.
Task<Status> MarkSnapshotDeleting(Env& env, objstore::ObjectStore& store, const std::string& name,
                                  const std::string& id, uint64_t epoch);
Task<Status> FinishSnapshotDelete(Env& env, objstore::ObjectStore& store, const std::string& id,
                                  uint64_t epoch);

// At open, once the opener manifest (of `epoch`) fenced every older writer: delete marks
// that older writers' unfinished deletes left. A listed snapshot's delete never committed
// (and no older writer can commit it now): its mark goes. An unlisted one's did: its
// object goes, then the mark (the order creators rely on). Marks of `epoch` or newer are
// left alone (a newer writer's delete may be running).
Task<Status> ClearStaleDeleteMarks(Env& env, objstore::ObjectStore& store,
                                   const std::vector<SnapshotRef>& listed, uint64_t epoch);

}  // namespace portal::volume
