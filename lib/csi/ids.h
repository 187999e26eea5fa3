// CSI ids and names of portalbd-csi (docs/csi.md "Controller"):
//   volume_id   = the portalbd volume name
//   snapshot_id = "<volume>@<snapshot>"
// A CSI name (CreateVolume, CreateSnapshot) maps to a portalbd name deterministically, so a
// retry of the same call finds what the first one made: the name itself when it passes
// portalbd's rule for that kind of name (volume/registry.h, volume/snapshot.h), else
// "csi-" + the first 32 hex digits of its SHA-256. Snapshot names starting with
// kCloneSnapshotPrefix are the controller's own (the snapshot a clone of a volume is made
// from) and are never a CSI name's mapping.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace portal::csi {

inline constexpr std::string_view kCloneSnapshotPrefix = "csi-clone-";

std::string VolumeNameFor(std::string_view csi_name);
std::string SnapshotNameFor(std::string_view csi_name);
// The snapshot of `source` that a clone of the volume `source` named `clone` reads.
std::string CloneSnapshotName(std::string_view clone);
bool IsCloneSnapshot(std::string_view snapshot);

// True when `id` could name a volume (it passes the volume-name rule).
bool IsVolumeId(std::string_view id);

struct SnapshotId {
  std::string volume;
  std::string snapshot;
};
std::string FormatSnapshotId(std::string_view volume, std::string_view snapshot);
// Nullopt when `id` is not "<valid volume name>@<valid snapshot name>".
std::optional<SnapshotId> ParseSnapshotId(std::string_view id);

// The CSI spec's banned characters in names: U+0000-U+0008, U+000B, U+000C,
// U+000E-U+001F, U+007F-U+009F.
bool HasBannedCharacter(std::string_view name);

}  // namespace portal::csi
