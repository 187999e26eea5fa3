#include "csi/node_service.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "csi/filesystems.h"
#include "csi/mount_table.h"
#include "csi/node_requests.h"

namespace portal::csi {

using grpc::StatusCode;
namespace v1 = ::csi::v1;

// Marks a volume busy for the length of one call; a second call on it is ABORTED.
class NodeService::VolumeLock {
 public:
  VolumeLock(NodeService* service, std::string volume)
      : service_(service), volume_(std::move(volume)) {
    std::lock_guard lock(service_->mu_);
    held_ = service_->busy_volumes_.insert(volume_).second;
  }
  ~VolumeLock() {
    if (!held_) return;
    std::lock_guard lock(service_->mu_);
    service_->busy_volumes_.erase(volume_);
  }
  VolumeLock(const VolumeLock&) = delete;
  VolumeLock& operator=(const VolumeLock&) = delete;

  grpc::Status status() const {
    if (held_) return grpc::Status::OK;
    return {StatusCode::ABORTED,
            fmt::format("another operation on volume {} is in progress", volume_)};
  }

 private:
  NodeService* service_;
  std::string volume_;
  bool held_ = false;
};

#define RETURN_IF_GRPC_ERROR(expr)               \
  do {                                           \
    ::grpc::Status grpc_status_ = (expr);        \
    if (!grpc_status_.ok()) return grpc_status_; \
  } while (0)

namespace {

grpc::Status Mounts(NodeHost* host, std::vector<MountEntry>* mounts) {
  auto m = host->Mounts();
  if (!m.ok()) return ToGrpc(m.status());
  *mounts = std::move(*m);
  return grpc::Status::OK;
}

// The first mount other than at `except`s that still shows `device` (a publish left over).
const MountEntry* OtherMountOf(const std::vector<MountEntry>& mounts, const std::string& device,
                               const std::string& except) {
  for (const auto& m : mounts) {
    if (m.mount_point != except && MountShowsDevice(m, device)) return &m;
  }
  return nullptr;
}

// Unmounts everything stacked at `path` (a retried publish may have mounted twice).
grpc::Status UnmountAll(NodeHost* host, const std::string& path) {
  for (int i = 0; i < 8; ++i) {
    std::vector<MountEntry> mounts;
    RETURN_IF_GRPC_ERROR(Mounts(host, &mounts));
    if (MountAt(mounts, path) == nullptr) return grpc::Status::OK;
    RETURN_IF_GRPC_ERROR(ToGrpc(Unmount(*host, path)));
  }
  return {StatusCode::INTERNAL, fmt::format("{} is still mounted after 8 umounts", path)};
}

}  // namespace

NodeService::NodeService(DaemonEndpoint daemon, std::string node_id)
    : own_daemon_(std::make_unique<ControlNodeDaemon>(std::move(daemon))),
      own_host_(std::make_unique<RealNodeHost>()),
      daemon_(own_daemon_.get()),
      host_(own_host_.get()),
      node_id_(std::move(node_id)) {}

NodeService::NodeService(NodeDaemon* daemon, NodeHost* host, std::string node_id)
    : daemon_(daemon), host_(host), node_id_(std::move(node_id)) {}

NodeService::~NodeService() = default;

// The device of `volume` and its mount at `path` (where it is staged or published):
// NOT_FOUND when the volume is not attached here or `path` does not show its device.
// `*at` points into `*mounts`.
grpc::Status NodeService::FindMounted(const std::string& volume, const std::string& path,
                                      AttachedDevice* device, std::vector<MountEntry>* mounts,
                                      const MountEntry** at) {
  bool attached = false;
  RETURN_IF_GRPC_ERROR(FindDevice(volume, device, &attached));
  if (!attached) {
    return {StatusCode::NOT_FOUND, fmt::format("volume {} is not staged on this node", volume)};
  }
  RETURN_IF_GRPC_ERROR(Mounts(host_, mounts));
  *at = MountAt(*mounts, path);
  if (*at == nullptr || !MountShowsDevice(**at, device->path)) {
    return {StatusCode::NOT_FOUND,
            fmt::format("volume {} is not staged or published at {}", volume, path)};
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::FindDevice(const std::string& volume, AttachedDevice* device,
                                     bool* found) {
  auto devices = daemon_->List();
  if (!devices.ok()) return ToGrpc(devices.status());
  *found = false;
  for (auto& d : *devices) {
    if (d.volume == volume) {
      *device = std::move(d);
      *found = true;
      break;
    }
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeStageVolume(grpc::ServerContext*,
                                          const v1::NodeStageVolumeRequest* req,
                                          v1::NodeStageVolumeResponse*) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  std::string staging;
  RETURN_IF_GRPC_ERROR(CheckPath("staging_target_path", req->staging_target_path(), &staging));
  NodeCapability cap;
  RETURN_IF_GRPC_ERROR(
      ParseCapability(req->has_volume_capability(), req->volume_capability(), &cap));
  if (!cap.block) RETURN_IF_GRPC_ERROR(ToGrpc(CheckFsType(*host_, cap.fs_type)));
  const std::string& volume = req->volume_id();
  VolumeLock lock(this, volume);
  RETURN_IF_GRPC_ERROR(lock.status());

  // Already staged? Look before asking anything of the daemon.
  std::vector<MountEntry> mounts;
  RETURN_IF_GRPC_ERROR(Mounts(host_, &mounts));
  AttachedDevice device;
  bool attached = false;
  RETURN_IF_GRPC_ERROR(FindDevice(volume, &device, &attached));
  if (const MountEntry* at = MountAt(mounts, staging)) {
    if (!cap.block && attached && at->source == device.path && !IsDeviceBind(*at, device.path)) {
      return grpc::Status::OK;
    }
    return {StatusCode::ALREADY_EXISTS,
            fmt::format("staging_target_path {} already holds {} ({}), not volume {}", staging,
                        at->source, at->fs_type, volume)};
  }

  // Served here first (fencing the node that had it, if any), then attached.
  RETURN_IF_GRPC_ERROR(ToGrpc(daemon_->Open(volume)));
  auto attach = daemon_->Attach(volume, cap.read_only);
  if (!attach.ok()) return ToGrpc(attach.status());
  device = std::move(*attach);
  if (cap.block) return grpc::Status::OK;  // no filesystem: publish binds the device itself

  auto content = ProbeDevice(*host_, device.path);
  if (!content.ok()) return ToGrpc(content.status());
  if (content->blank) {
    if (cap.read_only) {
      return {StatusCode::FAILED_PRECONDITION,
              fmt::format("volume {} is blank and staged read-only: nothing to mount", volume)};
    }
    RETURN_IF_GRPC_ERROR(ToGrpc(Format(*host_, device.path, cap.fs_type)));
  } else if (content->fs_type != cap.fs_type) {
    // Never format over anything: a volume's data is its owner's, whatever the CO asks.
    const std::string holds =
        content->fs_type.empty() ? content->other : "a " + content->fs_type + " filesystem";
    return {StatusCode::FAILED_PRECONDITION,
            fmt::format("volume {} holds {}; the capability asks for {} (portalbd-csi never "
                        "reformats a volume)",
                        volume, holds, cap.fs_type)};
  }
  std::error_code ec;
  std::filesystem::create_directories(staging, ec);
  std::vector<std::string> flags = cap.mount_flags;
  if (cap.read_only) flags.push_back("ro");
  return ToGrpc(MountDevice(*host_, device.path, staging, cap.fs_type, flags));
}

grpc::Status NodeService::NodeUnstageVolume(grpc::ServerContext*,
                                            const v1::NodeUnstageVolumeRequest* req,
                                            v1::NodeUnstageVolumeResponse*) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  std::string staging;
  RETURN_IF_GRPC_ERROR(CheckPath("staging_target_path", req->staging_target_path(), &staging));
  const std::string& volume = req->volume_id();
  VolumeLock lock(this, volume);
  RETURN_IF_GRPC_ERROR(lock.status());

  AttachedDevice device;
  bool attached = false;
  RETURN_IF_GRPC_ERROR(FindDevice(volume, &device, &attached));
  std::vector<MountEntry> mounts;
  RETURN_IF_GRPC_ERROR(Mounts(host_, &mounts));
  if (attached) {
    if (const MountEntry* at = MountAt(mounts, staging); at && at->source != device.path) {
      return {StatusCode::FAILED_PRECONDITION,
              fmt::format("staging_target_path {} holds {}, not volume {} ({})", staging,
                          at->source, volume, device.path)};
    }
  }
  RETURN_IF_GRPC_ERROR(UnmountAll(host_, staging));
  if (attached) {
    RETURN_IF_GRPC_ERROR(Mounts(host_, &mounts));
    if (const MountEntry* other = OtherMountOf(mounts, device.path, staging)) {
      return {StatusCode::FAILED_PRECONDITION,
              fmt::format("volume {} is still published at {}: NodeUnpublishVolume first", volume,
                          other->mount_point)};
    }
  }
  RETURN_IF_GRPC_ERROR(ToGrpc(daemon_->Detach(volume)));
  // Close it in the daemon too, durable first, so another node may open it at once.
  return ToGrpc(daemon_->Release(volume));
}

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*,
                                            const v1::NodePublishVolumeRequest* req,
                                            v1::NodePublishVolumeResponse*) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  std::string target;
  RETURN_IF_GRPC_ERROR(CheckPath("target_path", req->target_path(), &target));
  NodeCapability cap;
  RETURN_IF_GRPC_ERROR(
      ParseCapability(req->has_volume_capability(), req->volume_capability(), &cap));
  std::string staging;
  RETURN_IF_GRPC_ERROR(CheckPath("staging_target_path", req->staging_target_path(), &staging));
  const bool read_only = req->readonly() || cap.read_only;
  const std::string& volume = req->volume_id();
  VolumeLock lock(this, volume);
  RETURN_IF_GRPC_ERROR(lock.status());

  AttachedDevice device;
  bool attached = false;
  RETURN_IF_GRPC_ERROR(FindDevice(volume, &device, &attached));
  if (!attached) {
    return {StatusCode::FAILED_PRECONDITION,
            fmt::format("volume {} is not staged on this node: NodeStageVolume first", volume)};
  }
  std::vector<MountEntry> mounts;
  RETURN_IF_GRPC_ERROR(Mounts(host_, &mounts));
  if (!cap.block) {
    const MountEntry* staged = MountAt(mounts, staging);
    if (staged == nullptr || staged->source != device.path) {
      return {StatusCode::FAILED_PRECONDITION,
              fmt::format("volume {} is not staged at {}", volume, staging)};
    }
  }
  if (const MountEntry* at = MountAt(mounts, target)) {
    const bool same = cap.block ? IsDeviceBind(*at, device.path)
                                : at->source == device.path && !IsDeviceBind(*at, device.path);
    if (same && at->read_only() == read_only) return grpc::Status::OK;
    return {
        StatusCode::ALREADY_EXISTS,
        fmt::format("target_path {} already holds {}{}, not volume {}{}", target, at->source,
                    at->read_only() ? " read-only" : "", volume, read_only ? " read-only" : "")};
  }

  // Create the target the way the volume needs it: a directory, or a file the device
  // node is bound onto. Remove it again if the mount fails, so nothing is left behind.
  bool created = false;
  std::error_code ec;
  if (cap.block) {
    const int fd = open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      created = true;
      close(fd);
    } else if (errno != EEXIST) {
      return {StatusCode::INTERNAL, fmt::format("create {}: {}", target, std::strerror(errno))};
    }
  } else {
    created = std::filesystem::create_directory(target, ec);
    if (ec) return {StatusCode::INTERNAL, fmt::format("mkdir {}: {}", target, ec.message())};
  }
  Status s = BindMount(*host_, cap.block ? device.path : staging, target, read_only);
  if (!s.ok() && created) std::filesystem::remove(target, ec);
  return ToGrpc(s);
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*,
                                              const v1::NodeUnpublishVolumeRequest* req,
                                              v1::NodeUnpublishVolumeResponse*) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  std::string target;
  RETURN_IF_GRPC_ERROR(CheckPath("target_path", req->target_path(), &target));
  VolumeLock lock(this, req->volume_id());
  RETURN_IF_GRPC_ERROR(lock.status());
  RETURN_IF_GRPC_ERROR(UnmountAll(host_, target));
  // The spec: the SP deletes the file or directory it created. Not recursive: a
  // directory with files in it is no mount point of ours and stays.
  std::error_code ec;
  std::filesystem::remove(target, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return {StatusCode::INTERNAL, fmt::format("remove {}: {}", target, ec.message())};
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*,
                                             const v1::NodeGetVolumeStatsRequest* req,
                                             v1::NodeGetVolumeStatsResponse* resp) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  // A path that is not absolute is not INVALID_ARGUMENT here: it names no mount, so the
  // volume is not there, NOT_FOUND (csi-sanity asks for "some/path" and wants that; so
  // does NodeExpandVolume). The path is only compared with the mount table, never opened.
  if (req->volume_path().empty()) return {StatusCode::INVALID_ARGUMENT, "volume_path is required"};
  const std::string& volume = req->volume_id();
  AttachedDevice device;
  std::vector<MountEntry> mounts;
  const MountEntry* at = nullptr;
  RETURN_IF_GRPC_ERROR(FindMounted(volume, req->volume_path(), &device, &mounts, &at));

  std::string problem;
  auto size = host_->DeviceSizeBytes(device.path);
  if (!size.ok())
    problem = size.status().message();
  else if (*size == 0)
    problem = device.path + " is disconnected (the kernel shows no size)";
  else if (!device.connected) {
    problem = device.path + " has no connection to portalbd: I/O waits for it to reattach";
  }
  if (auto fenced = daemon_->Fenced(volume); !fenced.ok()) {
    problem = "the node's portalbd cannot report on it: " + fenced.status().message();
  } else if (*fenced) {
    problem =
        "fenced: another node's portalbd opened the volume, writes here fail; "
        "unstage it on this node";
  }
  if (IsDeviceBind(*at, device.path)) {
    if (size.ok()) {
      auto* u = resp->add_usage();
      u->set_unit(v1::VolumeUsage::BYTES);
      u->set_total(static_cast<int64_t>(*size));
    }
  } else {
    struct statvfs st;
    if (statvfs(at->mount_point.c_str(), &st) != 0) {
      problem = fmt::format("statvfs {}: {}", at->mount_point, std::strerror(errno));
    } else {
      const auto frsize = static_cast<int64_t>(st.f_frsize);
      auto* bytes = resp->add_usage();
      bytes->set_unit(v1::VolumeUsage::BYTES);
      bytes->set_total(static_cast<int64_t>(st.f_blocks) * frsize);
      bytes->set_available(static_cast<int64_t>(st.f_bavail) * frsize);
      bytes->set_used(static_cast<int64_t>(st.f_blocks - st.f_bfree) * frsize);
      auto* inodes = resp->add_usage();
      inodes->set_unit(v1::VolumeUsage::INODES);
      inodes->set_total(static_cast<int64_t>(st.f_files));
      inodes->set_available(static_cast<int64_t>(st.f_favail));
      inodes->set_used(static_cast<int64_t>(st.f_files - st.f_ffree));
    }
  }
  auto* condition = resp->mutable_volume_condition();
  condition->set_abnormal(!problem.empty());
  condition->set_message(problem.empty() ? fmt::format("attached at {}", device.path) : problem);
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeExpandVolume(grpc::ServerContext*,
                                           const v1::NodeExpandVolumeRequest* req,
                                           v1::NodeExpandVolumeResponse* resp) {
  RETURN_IF_GRPC_ERROR(CheckVolumeId(req->volume_id()));
  if (req->volume_path().empty()) return {StatusCode::INVALID_ARGUMENT, "volume_path is required"};
  const std::string& volume = req->volume_id();
  VolumeLock lock(this, volume);
  RETURN_IF_GRPC_ERROR(lock.status());
  AttachedDevice device;
  std::vector<MountEntry> mounts;
  const MountEntry* at = nullptr;
  RETURN_IF_GRPC_ERROR(FindMounted(volume, req->volume_path(), &device, &mounts, &at));
  auto size = host_->DeviceSizeBytes(device.path);
  if (!size.ok()) return ToGrpc(size.status());
  const auto& range = req->capacity_range();
  if (range.required_bytes() > 0 && *size < static_cast<uint64_t>(range.required_bytes())) {
    return {StatusCode::FAILED_PRECONDITION,
            fmt::format("{} is {} bytes, less than the {} asked for: the volume was not resized "
                        "(ControllerExpandVolume), or this node's portalbd has not given the "
                        "kernel the new size yet",
                        device.path, *size, range.required_bytes())};
  }
  if (range.limit_bytes() > 0 && *size > static_cast<uint64_t>(range.limit_bytes())) {
    return {StatusCode::OUT_OF_RANGE, fmt::format("{} is {} bytes, over the limit of {}",
                                                  device.path, *size, range.limit_bytes())};
  }
  const bool block = req->volume_capability().has_block() || IsDeviceBind(*at, device.path);
  if (!block) {
    RETURN_IF_GRPC_ERROR(ToGrpc(GrowFilesystem(*host_, at->fs_type, device.path, at->mount_point)));
  }
  resp->set_capacity_bytes(static_cast<int64_t>(*size));
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*,
                                              const v1::NodeGetCapabilitiesRequest*,
                                              v1::NodeGetCapabilitiesResponse* resp) {
  using Rpc = v1::NodeServiceCapability::RPC;
  for (auto type : {Rpc::STAGE_UNSTAGE_VOLUME, Rpc::GET_VOLUME_STATS, Rpc::EXPAND_VOLUME,
                    Rpc::VOLUME_CONDITION}) {
    resp->add_capabilities()->mutable_rpc()->set_type(type);
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const v1::NodeGetInfoRequest*,
                                      v1::NodeGetInfoResponse* resp) {
  // Usable: free NBD devices plus those the daemon already holds for volumes. CSI reads
  // 0 as "no limit", so a node without any is an error, not 0.
  auto slots = host_->NbdDevices();
  if (!slots.ok()) return ToGrpc(slots.status());
  std::vector<AttachedDevice> ours;
  if (auto list = daemon_->List(); list.ok()) ours = std::move(*list);
  int64_t usable = 0;
  for (const auto& slot : *slots) {
    bool mine = false;
    for (const auto& d : ours) mine = mine || d.path == slot.path;
    if (!slot.in_use || mine) ++usable;
  }
  if (usable == 0) {
    return {StatusCode::FAILED_PRECONDITION,
            slots->empty() ? "no /dev/nbdN devices on this node: load the nbd module "
                             "(modprobe nbd nbds_max=16)"
                           : fmt::format("all {} /dev/nbdN devices are in use by other programs",
                                         slots->size())};
  }
  resp->set_node_id(node_id_);
  resp->set_max_volumes_per_node(usable);
  return grpc::Status::OK;
}

}  // namespace portal::csi
