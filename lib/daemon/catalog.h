// VolumeCatalog: the daemon's NBD exports, one per served volume (daemon/volume_set.h):
// the volume's name ("portalbd" for the default volume, which the empty name also
// selects) and "NAME@SNAPSHOT" for each snapshot, read-only. NBD_OPT_LIST shows them all.
// With no default volume served, the empty name selects the only volume if there is one.
// A connection counts as attached to its volume until it ends (release and delete wait
// for none); one attached to a snapshot also keeps the snapshot from being deleted.
// A new connection sees the volume's size as it is then (a resize shows to new
// connections only).
#pragma once

#include <memory>
#include <string>

#include "daemon/volume_set.h"
#include "nbd/export.h"

namespace portal::daemon {

class VolumeCatalog final : public nbd::ExportCatalog {
 public:
  // `volumes` must outlive the catalog.
  explicit VolumeCatalog(const VolumeSet& volumes) : volumes_(volumes) {}

  std::vector<nbd::ExportInfo> List() override;
  Result<nbd::ExportInfo> Lookup(std::string_view name) override;
  Result<std::shared_ptr<nbd::OpenExport>> Open(std::string_view name) override;

 private:
  // "" to the name it selects.
  std::string Resolve(std::string_view name) const;
  static nbd::ExportInfo VolumeInfo(const ServedVolume& v);
  static nbd::ExportInfo SnapshotInfo(const ServedVolume& v, const volume::SnapshotInfo& s);

  const VolumeSet& volumes_;
};

}  // namespace portal::daemon
