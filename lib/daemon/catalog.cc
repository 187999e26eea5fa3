#include "daemon/catalog.h"

#include "util/rfc3339.h"

namespace portal::daemon {

nbd::ExportInfo VolumeCatalog::VolumeInfo(const ServedVolume& v) {
  nbd::ExportInfo info;
  info.name = v.name;
  info.description = v.is_default() ? "portalbd volume (" + v.volume->stats().storage_url + ")"
                                    : "portalbd volume " + v.name + " (" + v.view->url() + ")";
  info.size_bytes = v.volume->size_bytes();
  info.preferred_block_size = v.volume->block_size();
  info.read_only = v.volume->read_only();  // salvage
  return info;
}

nbd::ExportInfo VolumeCatalog::SnapshotInfo(const ServedVolume& v,
                                            const volume::SnapshotInfo& s) {
  nbd::ExportInfo info;
  info.name = v.name + "@" + s.name;
  info.description = "snapshot " + s.name + " taken " + FormatRfc3339(s.created_ns) +
                     " (read-only)";
  info.size_bytes = s.size_bytes;
  info.read_only = true;
  info.preferred_block_size = v.volume->block_size();
  return info;
}

std::vector<nbd::ExportInfo> VolumeCatalog::List() {
  std::vector<nbd::ExportInfo> out;
  for (const auto& v : volumes_.All()) {
    out.push_back(VolumeInfo(*v));
    for (const auto& s : v->volume->ListSnapshots()) out.push_back(SnapshotInfo(*v, s));
  }
  return out;
}

std::string VolumeCatalog::Resolve(std::string_view name) const {
  if (!name.empty()) return std::string(name);
  if (volumes_.Find(volume::kDefaultVolumeName)) return std::string(volume::kDefaultVolumeName);
  auto all = volumes_.All();
  return all.size() == 1 ? all[0]->name : std::string(volume::kDefaultVolumeName);
}

Result<nbd::ExportInfo> VolumeCatalog::Lookup(std::string_view name) {
  const std::string resolved = Resolve(name);
  // Volume names hold no '@' (volume::ValidateVolumeName), so the first one splits.
  const size_t at = resolved.find('@');
  std::shared_ptr<ServedVolume> v = volumes_.Find(resolved.substr(0, at));
  if (v && at == std::string::npos) return VolumeInfo(*v);
  if (v) {
    auto s = v->volume->GetSnapshot(resolved.substr(at + 1));
    if (s.ok()) return SnapshotInfo(*v, *s);
  }
  return Status::NotFound("no export named '" + std::string(name) + "'");
}

Result<std::shared_ptr<nbd::OpenExport>> VolumeCatalog::Open(std::string_view name) {
  const std::string resolved = Resolve(name);
  const size_t at = resolved.find('@');
  std::shared_ptr<ServedVolume> v;
  std::shared_ptr<void> pin = volumes_.Attach(resolved.substr(0, at), &v);
  if (!pin) return Status::NotFound("no export named '" + std::string(name) + "'");
  ASSIGN_OR_RETURN(nbd::ExportInfo info, Lookup(resolved));
  if (at == std::string::npos) {  // the volume (read-only only in salvage)
    return std::make_shared<nbd::OpenExport>(
        nbd::OpenExport{info, v->volume, std::move(pin), nullptr});
  }
  ASSIGN_OR_RETURN(std::shared_ptr<device::BlockDevice> dev,
                   v->volume->OpenSnapshot(resolved.substr(at + 1)));
  return std::make_shared<nbd::OpenExport>(
      nbd::OpenExport{info, std::move(dev), std::move(pin), nullptr});
}

}  // namespace portal::daemon
