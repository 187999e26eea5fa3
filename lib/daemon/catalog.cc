#include "daemon/catalog.h"

#include "util/rfc3339.h"

namespace portal::daemon {

nbd::ExportInfo VolumeCatalog::VolumeInfo() const {
  nbd::ExportInfo info;
  info.name = name_;
  info.description = description_;
  info.size_bytes = volume_->size_bytes();
  info.preferred_block_size = volume_->block_size();
  info.read_only = volume_->read_only();  // salvage
  return info;
}

nbd::ExportInfo VolumeCatalog::SnapshotInfo(const volume::SnapshotInfo& s) const {
  nbd::ExportInfo info;
  info.name = name_ + "@" + s.name;
  info.description = "snapshot " + s.name + " taken " + FormatRfc3339(s.created_ns) +
                     " (read-only)";
  info.size_bytes = s.size_bytes;
  info.read_only = true;
  info.preferred_block_size = volume_->block_size();
  return info;
}

std::vector<nbd::ExportInfo> VolumeCatalog::List() {
  std::vector<nbd::ExportInfo> out{VolumeInfo()};
  for (const auto& s : volume_->ListSnapshots()) out.push_back(SnapshotInfo(s));
  return out;
}

Result<nbd::ExportInfo> VolumeCatalog::Lookup(std::string_view name) {
  if (name.empty() || name == name_) return VolumeInfo();
  const std::string prefix = name_ + "@";
  if (name.starts_with(prefix)) {
    auto s = volume_->GetSnapshot(std::string(name.substr(prefix.size())));
    if (s.ok()) return SnapshotInfo(*s);
  }
  return Status::NotFound("no export named '" + std::string(name) + "'");
}

Result<std::shared_ptr<nbd::OpenExport>> VolumeCatalog::Open(std::string_view name) {
  ASSIGN_OR_RETURN(nbd::ExportInfo info, Lookup(name));
  if (info.name == name_) {  // the volume (read-only only in salvage)
    return std::make_shared<nbd::OpenExport>(nbd::OpenExport{info, volume_, nullptr, nullptr});
  }
  const std::string snap(name.substr(name_.size() + 1));
  ASSIGN_OR_RETURN(std::shared_ptr<device::BlockDevice> dev, volume_->OpenSnapshot(snap));
  return std::make_shared<nbd::OpenExport>(nbd::OpenExport{info, std::move(dev), nullptr, nullptr});
}

}  // namespace portal::daemon
