// portalctl: controls a running portalbd through its control socket (docs/control.md).
//
//   portalctl [-s|--socket PATH] [--json] snapshot [--volume VOL] create NAME | list |
//                                         get NAME | delete NAME | restore NAME
//   portalctl [-s|--socket PATH] [--json] volume create NAME --size SIZE | list | get NAME |
//                                         delete NAME | resize NAME --size SIZE
//                                         [--allow-shrink] | open NAME | release NAME |
//                                         clone SOURCE@SNAPSHOT NEW
//   portalctl [-s|--socket PATH] [--json] device attach VOLUME [--device /dev/nbdN]
//                                         [--read-only] | detach (VOLUME|/dev/nbdN) | list
//   portalctl [-s|--socket PATH] [--json] status
//
// Output follows the original portalbd's README; --json prints the daemon's reply line.
// Every error goes to stderr as "Error: ..." and exits 1. Snapshot create, delete and
// restore show a progress line on stderr after a second when it is a terminal (not with
// --quiet or --json; progress.h).
#include <fmt/format.h>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/cli.h"
#include "config/config.h"  // ParseSize
#include "control/client.h"
#include "control/protocol.h"
#include "portalctl/progress.h"
#include "util/rfc3339.h"
#include "volume/registry.h"
#include "volume/snapshot.h"

namespace {

using portal::Status;
using namespace portal::control;

std::string FormatSize(uint64_t bytes) {
  constexpr double kKiB = 1024.0, kMiB = kKiB * 1024, kGiB = kMiB * 1024, kTiB = kGiB * 1024,
                   kPiB = kTiB * 1024, kEiB = kPiB * 1024;
  const double b = static_cast<double>(bytes);
  if (b >= kEiB) return fmt::format("{:.2f} EiB", b / kEiB);
  if (b >= kPiB) return fmt::format("{:.2f} PiB", b / kPiB);
  if (b >= kTiB) return fmt::format("{:.2f} TiB", b / kTiB);
  if (b >= kGiB) return fmt::format("{:.2f} GiB", b / kGiB);
  if (b >= kMiB) return fmt::format("{:.2f} MiB", b / kMiB);
  if (b >= kKiB) return fmt::format("{:.2f} KiB", b / kKiB);
  return fmt::format("{} B", bytes);
}

// "1 segment", "2 segments".
std::string Count(uint64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

void PrintSnapshot(const SnapshotEntry& s, bool detail) {
  std::printf("Snapshot: %s\n", s.name.c_str());
  std::printf("  ID:      %s\n", s.id.c_str());
  std::printf("  Created: %s\n", portal::FormatRfc3339(s.created_ns).c_str());
  if (!detail) return;
  std::printf("  Size:    %s\n", FormatSize(s.size_bytes).c_str());
  std::printf("  Pinned:  %s\n", FormatSize(s.pinned_bytes).c_str());
  std::printf("  Clients: %d (attached as portalbd@%s)\n", s.attached, s.name.c_str());
}

void PrintList(const std::vector<SnapshotEntry>& list) {
  if (list.empty()) {
    std::printf("No snapshots\n");
    return;
  }
  size_t w = 4;
  for (const auto& s : list) w = std::max(w, s.name.size());
  std::string out = fmt::format("{:<{}}  {:<36}  {:<27}  {:>10}  {:>10}\n", "NAME", w, "ID",
                                "CREATED", "SIZE", "PINNED");
  for (const auto& s : list) {
    out += fmt::format("{:<{}}  {:<36}  {:<27}  {:>10}  {:>10}\n", s.name, w, s.id,
                       portal::FormatRfc3339(s.created_ns), FormatSize(s.size_bytes),
                       FormatSize(s.pinned_bytes));
  }
  std::fputs(out.c_str(), stdout);
}

std::string CloneOf(const VolumeEntry& v) {
  return v.clone_of_volume.empty() ? "-" : v.clone_of_volume + "@" + v.clone_of_snapshot;
}

void PrintVolume(const VolumeEntry& v) {
  std::string out = fmt::format("Volume: {}{}\n", v.name, v.is_default ? " (default)" : "");
  out += fmt::format("  Size:      {} ({} bytes)\n", FormatSize(v.size_bytes), v.size_bytes);
  out += fmt::format("  Live data: {}\n", FormatSize(v.live_bytes));
  out += fmt::format("  Stored:    {}\n", FormatSize(v.bytes_stored));
  out += fmt::format("  Snapshots: {}\n", v.snapshots);
  out += fmt::format("  Clients:   {}\n", v.attached);
  out += fmt::format("  Epoch:     {}{}\n", v.epoch,
                     v.fenced ? " (FENCED: another daemon opened the volume)" : "");
  out += fmt::format("  UUID:      {}\n", v.volume_uuid);
  if (!v.clone_of_volume.empty()) out += fmt::format("  Clone of:  {}\n", CloneOf(v));
  std::fputs(out.c_str(), stdout);
}

void PrintVolumes(const std::vector<VolumeEntry>& list) {
  if (list.empty()) {
    std::printf("No volumes\n");
    return;
  }
  size_t w = 4;
  for (const auto& v : list) w = std::max(w, v.name.size());
  std::string out = fmt::format("{:<{}}  {:>10}  {:>10}  {:>9}  {:>7}  {:>6}  {}\n", "NAME", w,
                                "SIZE", "LIVE", "SNAPSHOTS", "CLIENTS", "EPOCH", "CLONE OF");
  for (const auto& v : list) {
    out += fmt::format("{:<{}}  {:>10}  {:>10}  {:>9}  {:>7}  {:>6}  {}{}\n", v.name, w,
                       FormatSize(v.size_bytes), FormatSize(v.live_bytes), v.snapshots,
                       v.attached, v.epoch, CloneOf(v), v.fenced ? "  FENCED" : "");
  }
  std::fputs(out.c_str(), stdout);
}

void PrintDevices(const std::vector<DeviceEntry>& list) {
  if (list.empty()) {
    std::printf("No devices\n");
    return;
  }
  std::printf("%-12s %-24s %16s %-10s %s\n", "DEVICE", "VOLUME", "SIZE_BYTES", "MODE", "STATE");
  for (const auto& d : list) {
    std::printf("%-12s %-24s %16llu %-10s %s\n", d.path.c_str(), d.volume.c_str(),
                static_cast<unsigned long long>(d.size_bytes),
                d.read_only ? "read-only" : "read-write",
                d.connected ? "connected" : "reattaching");
  }
}

void PrintStatus(const DaemonStatus& s) {
  std::string out = "portalbd daemon status:\n";
  auto line = [&](std::string_view label, const std::string& value) {
    out += fmt::format("  {:<11} {}\n", std::string(label) + ":", value);
  };
  line("Size", fmt::format("{} ({} bytes)", FormatSize(s.size_bytes), s.size_bytes));
  line("Blocks",
       fmt::format("{} of {} bytes", s.block_size ? s.size_bytes / s.block_size : 0, s.block_size));
  line("Snapshots", std::to_string(s.snapshots));
  line("NBD", fmt::format("{} ({})", s.nbd_address, Count(s.nbd_connections, "connection")));
  line("Storage", s.storage_url);
  if (s.store_failing_since.empty()) {
    line("Store", "ok");
  } else {
    line("Store", fmt::format("FAILING since {} ({}): {}; retrying, FLUSH and FUA wait",
                              s.store_failing_since,
                              Count(s.store_failed_attempts, "failed upload"), s.store_error));
  }
  line("Volume", s.volume_uuid);
  line("Epoch", fmt::format("{} ({})", s.epoch,
                            s.fenced ? "FENCED: another writer opened the volume; writes, "
                                       "flushes and snapshots fail"
                                     : "not fenced"));
  line("Manifest", std::to_string(s.manifest_number));
  line("Stored", fmt::format("{}, {} ({}, {}; {}, {})", Count(s.objects_stored, "object"),
                             FormatSize(s.bytes_stored), Count(s.segments, "segment"),
                             FormatSize(s.segment_bytes), Count(s.map_ssts, "map SST"),
                             FormatSize(s.map_bytes)));
  line("Live data", FormatSize(s.live_bytes) + " referenced by the device's map");
  line("Garbage", fmt::format("~{} referenced only by overwritten map entries ({} to release "
                              "it so far)",
                              FormatSize(s.shadowed_bytes),
                              Count(s.full_compactions, "full compaction")));
  line("Buffers",
       fmt::format("{} not yet in a segment (limit {}), {}", FormatSize(s.buffer_bytes),
                   FormatSize(s.max_unflushed_bytes), Count(s.write_stalls, "write stall")));
  line("Cache", fmt::format("{} of {}, {} hits, {} misses", FormatSize(s.cache_bytes),
                            FormatSize(s.cache_capacity_bytes), s.cache_hits, s.cache_misses));
  if (s.disk_cache_capacity_bytes > 0) {
    line("Disk cache",
         fmt::format("{} of {}, {} hits, {} misses, {} dropped as damaged{}",
                     FormatSize(s.disk_cache_bytes), FormatSize(s.disk_cache_capacity_bytes),
                     s.disk_cache_hits, s.disk_cache_misses, s.disk_cache_damaged,
                     s.disk_cache_enabled ? "" : " (off)"));
  }
  line("Read-ahead",
       fmt::format("{}, {}, {} chunks used, {} evicted unused, {} failed",
                   Count(s.read_ahead_gets, "GET"), FormatSize(s.read_ahead_bytes),
                   s.read_ahead_hits, s.read_ahead_wasted, s.read_ahead_failed));
  line("Integrity", fmt::format("{} fetched again after failing verification",
                                Count(s.corrupt_refetches, "object read")));
  if (s.requests.empty()) {
    line("Requests", "none");
  } else {
    out += "  Requests:\n";
  }
  for (const auto& r : s.requests) {
    // LIST counts entries returned, the others payload bytes (objstore/counting_store.h).
    std::string amount =
        r.kind == "LIST" ? fmt::format("{} entries", r.bytes) : FormatSize(r.bytes);
    out += fmt::format("    {:<14} {:>8} calls  {:>6} errors  {}\n", r.kind, r.calls, r.errors,
                       amount);  // a table: "calls" stays plural
  }
  line("Version", s.version);
  std::fputs(out.c_str(), stdout);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "Error: %s\n", message.c_str());
  return 1;
}

// A failure before any reply (connection, I/O): with --json, stdout still gets a reply-
// shaped error object.
int FailStatus(const Status& st, bool json) {
  if (json) std::fputs(EncodeReply(ErrorFromStatus(st)).c_str(), stdout);
  return Fail(st.message());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"portalctl: control a running portalbd (volumes, snapshots, status)"};
  app.set_version_flag("-V,--version", std::string("portalctl ") + PORTALBD_VERSION);
  std::string socket_path = "/run/portalbd/portalbd.sock";
  bool json = false;
  bool quiet = false;
  int timeout_s = 0;
  auto* socket_opt = app.add_option("-s,--socket", socket_path, "portalbd's control socket")
      ->envname("PORTALBD_SOCKET")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  app.add_flag("--json", json, "print the daemon's JSON reply instead of text");
  app.add_flag("-q,--quiet", quiet, "no progress line on a terminal while waiting");
  app.add_option("--timeout", timeout_s, "seconds to wait for the reply (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 24 * 3600));
  app.require_subcommand(1);

  Request request;
  std::string name;
  auto* snapshot = app.add_subcommand("snapshot", "create, list, get, delete or restore snapshots");
  snapshot->require_subcommand(1);
  snapshot->fallthrough();
  auto add = [&](const char* cmd, const char* help, Op op, bool takes_name) {
    auto* sub = snapshot->add_subcommand(cmd, help);
    sub->fallthrough();
    if (takes_name) sub->add_option("name", name, "snapshot name")->required();
    sub->callback([&request, op] { request.op = op; });
  };
  add("create", "snapshot the device (captures every write acknowledged before it)",
      Op::kSnapshotCreate, true);
  add("list", "list snapshots", Op::kSnapshotList, false);
  add("get", "show one snapshot", Op::kSnapshotGet, true);
  add("delete", "delete a snapshot (refused while attached as portalbd@NAME)", Op::kSnapshotDelete,
      true);
  add("restore", "make the device equal the snapshot (clients must drop cached blocks)",
      Op::kSnapshotRestore, true);
  snapshot->add_option("--volume", request.volume,
                       "the volume (default: the default volume, portalbd)");

  std::string size_text;
  auto* volume = app.add_subcommand("volume",
                                    "create, list, get, delete, resize, open, "
                                    "release or clone volumes");
  volume->require_subcommand(1);
  volume->fallthrough();
  auto add_volume = [&](const char* cmd, const char* help, Op op, bool takes_name) {
    auto* sub = volume->add_subcommand(cmd, help);
    sub->fallthrough();
    if (takes_name) sub->add_option("name", name, "volume name")->required();
    sub->callback([&request, op] { request.op = op; });
    return sub;
  };
  add_volume("create", "create a volume and serve it", Op::kVolumeCreate, true)
      ->add_option("--size", size_text, "size, e.g. 100G (K, M, G, T; binary units)")
      ->required();
  add_volume("list", "list the volumes this daemon serves", Op::kVolumeList, false);
  add_volume("get", "show one volume", Op::kVolumeGet, true);
  add_volume("delete", "delete a volume and its data (refused while clients are attached)",
             Op::kVolumeDelete, true);
  auto* resize = add_volume("resize", "grow a volume online (or shrink: --allow-shrink)",
                            Op::kVolumeResize, true);
  resize->add_option("--size", size_text, "new size, e.g. 200G")->required();
  resize->add_flag("--allow-shrink", request.allow_shrink,
                   "allow a smaller size (only with no client attached; the cut-off data is "
                   "lost)");
  add_volume("open", "serve a volume (fencing any daemon that served it)", Op::kVolumeOpen, true);
  add_volume("release", "stop serving a volume (refused while clients are attached)",
             Op::kVolumeRelease, true);
  std::string clone_source;
  auto* clone = volume->add_subcommand(
      "clone", "make a volume from a snapshot, writable at once (no data copied) and served");
  clone->fallthrough();
  clone->add_option("source", clone_source, "SOURCE@SNAPSHOT: a volume and its snapshot")
      ->required();
  clone->add_option("name", name, "the new volume's name")->required();
  clone->callback([&request] { request.op = Op::kVolumeClone; });

  auto* device = app.add_subcommand(
      "device", "attach, detach or list kernel NBD devices the daemon serves (/dev/nbdN)");
  device->require_subcommand(1);
  device->fallthrough();
  std::string device_target;
  auto* attach = device->add_subcommand(
      "attach", "attach a volume to a kernel NBD device (prints the device; idempotent)");
  attach->fallthrough();
  attach->add_option("volume", request.volume, "volume name")->required();
  attach->add_option("--device", request.device, "the device, /dev/nbdN (default: a free one)");
  attach->add_flag("--read-only", request.read_only, "attach read-only");
  attach->callback([&request] { request.op = Op::kDeviceAttach; });
  auto* detach = device->add_subcommand(
      "detach", "flush and detach a device (by volume or /dev/nbdN; idempotent)");
  detach->fallthrough();
  detach->add_option("target", device_target, "VOLUME or /dev/nbdN")->required();
  detach->callback([&request] { request.op = Op::kDeviceDetach; });
  auto* device_list = device->add_subcommand("list", "list the daemon's kernel devices");
  device_list->fallthrough();
  device_list->callback([&request] { request.op = Op::kDeviceList; });

  auto* status = app.add_subcommand("status", "show the daemon's status");
  status->fallthrough();
  status->callback([&request] { request.op = Op::kStatus; });

  portal::cli::RefuseEmptyValues(app);
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;
  // CLI11 takes an empty variable for an unset one, and the default socket may be another
  // daemon's.
  if (const char* env = std::getenv("PORTALBD_SOCKET"); env && !*env && !socket_opt->count()) {
    return Fail("PORTALBD_SOCKET must not be empty (unset it for the default socket)");
  }

  request.name = name;
  if (request.op == Op::kDeviceDetach) {
    (device_target.starts_with("/dev/") ? request.device : request.volume) = device_target;
  }
  if (IsDeviceOp(request.op)) {
    if (!request.volume.empty() && request.volume != portal::volume::kDefaultVolumeName) {
      if (Status st = portal::volume::ValidateVolumeName(request.volume); !st.ok()) {
        return FailStatus(st, json);
      }
    }
  } else if (IsVolumeOp(request.op)) {
    if (!size_text.empty()) {
      auto size = portal::config::ParseSize(size_text);
      if (!size.ok()) return FailStatus(size.status().WithContext("--size"), json);
      request.size_bytes = *size;
    }
    if (request.op == Op::kVolumeClone) {
      const auto at = clone_source.find('@');
      if (at == std::string::npos) {
        return FailStatus(Status::InvalidArgument(fmt::format(
                              "clone source '{}' is not SOURCE@SNAPSHOT", clone_source)),
                          json);
      }
      request.source = clone_source.substr(0, at);
      request.snapshot = clone_source.substr(at + 1);
      if (request.source != portal::volume::kDefaultVolumeName) {
        if (Status st = portal::volume::ValidateVolumeName(request.source); !st.ok()) {
          return FailStatus(st, json);
        }
      }
      if (Status st = portal::volume::ValidateSnapshotName(request.snapshot); !st.ok()) {
        return FailStatus(st, json);
      }
    }
    const bool is_default = name == portal::volume::kDefaultVolumeName;
    if (OpTakesName(request.op) && !(is_default && request.op != Op::kVolumeCreate)) {
      if (Status st = portal::volume::ValidateVolumeName(name); !st.ok()) {
        return FailStatus(st, json);
      }
    }
  } else if (OpTakesName(request.op)) {
    if (Status st = portal::volume::ValidateSnapshotName(name); !st.ok()) {
      return FailStatus(st, json);
    }
  }
  auto client = Client::Connect(socket_path);
  if (!client.ok()) return FailStatus(client.status(), json);
  (*client)->set_timeout_ms(timeout_s * 1000);
  std::unique_ptr<Progress> progress;
  const bool may_take_long = request.op == Op::kSnapshotCreate ||
                             request.op == Op::kSnapshotDelete ||
                             request.op == Op::kSnapshotRestore ||
                             request.op == Op::kVolumeDelete || request.op == Op::kVolumeRelease;
  if (may_take_long && !json && !quiet && ::isatty(STDERR_FILENO)) {
    const std::string_view op_name = OpName(request.op);
    progress = std::make_unique<Progress>(
        fmt::format("{} {} {}", op_name.substr(0, op_name.find('.')),
                    op_name.substr(op_name.find('.') + 1), name),
        socket_path);
    (*client)->set_wait_tick(500, [p = progress.get()] { p->Tick(); });
  }
  if (Status st = (*client)->Send(EncodeRequest(request)); !st.ok()) return FailStatus(st, json);
  auto line = (*client)->ReadLine();
  if (progress) progress->Done();
  if (!line.ok()) return FailStatus(line.status(), json);
  auto reply = DecodeReply(*line);
  if (!reply.ok()) return FailStatus(reply.status().WithContext("bad reply from portalbd"), json);
  if (json) std::printf("%s\n", line->c_str());
  if (const auto* err = std::get_if<ErrorReply>(&*reply)) return Fail(err->message);
  if (json) return 0;

  if (std::holds_alternative<OkReply>(*reply)) {
    std::printf("OK\n");
  } else if (const auto* s = std::get_if<SnapshotReply>(&*reply)) {
    PrintSnapshot(s->snapshot, request.op == Op::kSnapshotGet);
  } else if (const auto* l = std::get_if<SnapshotListReply>(&*reply)) {
    PrintList(l->snapshots);
  } else if (const auto* st = std::get_if<StatusReply>(&*reply)) {
    PrintStatus(st->status);
  } else if (const auto* v = std::get_if<VolumeReply>(&*reply)) {
    PrintVolume(v->volume);
  } else if (const auto* vl = std::get_if<VolumeListReply>(&*reply)) {
    PrintVolumes(vl->volumes);
  } else if (const auto* d = std::get_if<DeviceReply>(&*reply)) {
    std::printf("%s\n", d->device.path.c_str());  // scripts: dev=$(portalctl device attach v)
  } else if (const auto* dl = std::get_if<DeviceListReply>(&*reply)) {
    PrintDevices(dl->devices);
  } else if (const auto* dd = std::get_if<DeviceDetachReply>(&*reply)) {
    if (dd->detached) {
      std::printf("Detached %s (volume %s)\n", dd->device.path.c_str(),
                  dd->device.volume.c_str());
    } else {
      std::printf("Not attached: %s\n", device_target.c_str());
    }
  }
  return 0;
}
