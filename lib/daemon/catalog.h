// VolumeCatalog: the daemon's NBD exports. "portalbd" (also the empty default name) is
// the live volume; "portalbd@NAME" is snapshot NAME, read-only. NBD_OPT_LIST shows both.
// A client attached to a snapshot keeps it from being deleted until it disconnects.
#pragma once

#include <memory>
#include <string>

#include "nbd/export.h"
#include "volume/volume.h"

namespace portal::daemon {

class VolumeCatalog final : public nbd::ExportCatalog {
 public:
  VolumeCatalog(std::string name, std::string description,
                std::shared_ptr<volume::Volume> volume)
      : name_(std::move(name)), description_(std::move(description)), volume_(std::move(volume)) {}

  std::vector<nbd::ExportInfo> List() override;
  Result<nbd::ExportInfo> Lookup(std::string_view name) override;
  Result<std::shared_ptr<nbd::OpenExport>> Open(std::string_view name) override;

 private:
  nbd::ExportInfo VolumeInfo() const;
  nbd::ExportInfo SnapshotInfo(const volume::SnapshotInfo& s) const;

  std::string name_;
  std::string description_;
  std::shared_ptr<volume::Volume> volume_;
};

}  // namespace portal::daemon
