#include "daemon/devices.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "env/async.h"
#include "nbd/handshake.h"
#include "nbdlink/nbdlink.h"
#include "util/log.h"
#include "volume/registry.h"

namespace portal::daemon {
namespace {

auto Log() { return log::Get("portalbd::device"); }

uint64_t Seconds(uint64_t ms) { return (ms + 999) / 1000; }

// The kernel's logical block size: the volume's block size within what 6.1 accepts (a
// power of two from 512 to the page size), so aligned I/O never needs a read-modify-write.
uint64_t KernelBlockSize(uint32_t preferred) {
  uint64_t b = 512;
  while (b < preferred && b < 4096) b <<= 1;
  return b;
}

constexpr uint64_t kRetryMinNs = 100 * kNanosPerMilli;
constexpr uint64_t kRetryMaxNs = 5000 * kNanosPerMilli;
constexpr uint64_t kCloseWaitMs = 5000;

}  // namespace

DeviceSet::DeviceSet(Env& env, nbd::ExportCatalog& catalog, nbd::Server& server, Options options)
    : env_(env), catalog_(catalog), server_(server), options_(std::move(options)) {}

control::DeviceEntry DeviceSet::EntryLocked(const Device& d) const {
  control::DeviceEntry e;
  e.path = nbdlink::DevicePath(d.rec.index);
  e.volume = d.rec.volume;
  e.size_bytes = d.size_bytes;
  e.read_only = d.rec.read_only;
  e.connected = d.connected;
  return e;
}

Status DeviceSet::SaveLocked() {
  std::vector<DeviceRecord> records;
  for (const auto& [index, d] : devices_) records.push_back(d.rec);
  return SaveDeviceState(options_.state_file, records);
}

Status DeviceSet::ServeLocked(Device& d, bool reconfigure) {
  auto opened = catalog_.Open(d.rec.volume);
  if (!opened.ok()) return opened.status().WithContext("volume " + d.rec.volume);
  std::shared_ptr<nbd::OpenExport> exp = *opened;
  if (d.rec.read_only) exp->info.read_only = true;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Status::IOError(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  // Our end first: if the kernel refuses its end, closing that ends this connection, and
  // its generation is no longer current by then.
  const uint64_t gen = next_generation_++;
  auto conn = server_.Adopt(sv[0], exp, fmt::format("nbd{}", std::max(d.rec.index, 0)),
                            [this, gen] { env_.PostBlocking([this, gen] { OnClosed(gen); }); });
  if (!conn.ok()) {
    ::close(sv[1]);
    return conn.status();
  }
  Status st;
  if (reconfigure) {
    st = nbdlink::Reconfigure(d.rec.index, d.rec.backend, sv[1], exp->info.size_bytes);
  } else {
    nbdlink::ConnectParams p;
    p.index = d.rec.index;
    p.size_bytes = exp->info.size_bytes;
    p.block_size = KernelBlockSize(exp->info.preferred_block_size);
    p.server_flags = nbd::Handshake::TransmissionFlags(exp->info, /*structured=*/false);
    p.socket_fd = sv[1];
    p.io_timeout_s = Seconds(options_.io_timeout_ms);
    p.dead_conn_timeout_s = Seconds(options_.reattach_timeout_ms);
    p.backend = d.rec.backend;
    auto index = nbdlink::Connect(p);
    if (index.ok()) {
      d.rec.index = *index;
    } else {
      st = index.status();
    }
  }
  ::close(sv[1]);  // the kernel holds its own reference
  if (!st.ok()) return st;
  d.size_bytes = exp->info.size_bytes;
  d.exp = std::move(exp);
  d.conn = *conn;
  d.generation = gen;
  d.connected = true;
  return Status::Ok();
}

Status DeviceSet::Restore() {
  auto records = LoadDeviceState(options_.state_file);
  if (!records.ok()) return records.status();
  std::lock_guard lock(mu_);
  bool changed = false;
  for (DeviceRecord& r : *records) {
    const std::string path = nbdlink::DevicePath(r.index);
    if (options_.reattach_timeout_ms == 0) {
      Log()->warn("device not reattached (device.reattach_timeout_ms = 0) device={} volume={}",
                  path, r.volume);
      changed = true;
      continue;
    }
    auto configured = nbdlink::Configured(r.index);
    if (!configured.ok()) return configured.status();
    if (!*configured) {
      Log()->info("device gone, record dropped device={} volume={}", path, r.volume);
      changed = true;
      continue;
    }
    Device& d = devices_[r.index];
    d.rec = r;
    if (Status st = ServeLocked(d, /*reconfigure=*/true); !st.ok()) {
      // Kept: the kernel queues its I/O; retried like a dropped connection.
      Log()->error("device not reattached yet device={} volume={} error=\"{}\"", path, r.volume,
                   st.ToString());
      ScheduleReconnectLocked(d);
      continue;
    }
    Log()->info("device reattached device={} volume={} size_bytes={} read_only={}", path, r.volume,
                d.exp->info.size_bytes, r.read_only);
  }
  if (changed) return SaveLocked();
  return Status::Ok();
}

Task<Result<control::DeviceEntry>> DeviceSet::Attach(std::string volume, std::string device,
                                                     bool read_only) {
  int want = -1;
  if (!device.empty()) {
    auto index = nbdlink::ParseDevicePath(device);
    if (!index.ok()) co_return index.status();
    want = *index;
  }
  if (volume != volume::kDefaultVolumeName) {
    if (Status st = volume::ValidateVolumeName(volume); !st.ok()) co_return st;
  }
  co_return co_await RunBlocking(env_, [&]() -> Result<control::DeviceEntry> {
    std::lock_guard lock(mu_);
    if (stopping_) return Status::Shutdown("portalbd is stopping");
    for (auto& [index, d] : devices_) {
      if (d.rec.volume == volume && !d.detaching) {
        if (want >= 0 && want != index) {
          return Status::Busy(fmt::format("volume {} is already attached at {}", volume,
                                          nbdlink::DevicePath(index)));
        }
        if (d.rec.read_only != read_only) {
          return Status::Busy(fmt::format("volume {} is already attached at {} {}", volume,
                                          nbdlink::DevicePath(index),
                                          d.rec.read_only ? "read-only" : "read-write"));
        }
        return EntryLocked(d);
      }
    }
    if (want >= 0 && devices_.count(want)) {
      return Status::Busy(
          fmt::format("{} already serves volume {}", device, devices_.at(want).rec.volume));
    }
    Device d;
    d.rec.index = want;
    d.rec.volume = volume;
    d.rec.read_only = read_only;
    d.rec.backend = DeviceBackend(volume);
    if (Status st = ServeLocked(d, /*reconfigure=*/false); !st.ok()) {
      return st.WithContext(fmt::format("attach of volume {}", volume));
    }
    const int index = d.rec.index;
    devices_[index] = std::move(d);
    if (Status st = SaveLocked(); !st.ok()) {
      // Unrecorded, the device would not survive a restart: undo it.
      devices_[index].detaching = true;
      (void)nbdlink::Disconnect(index);
      devices_.erase(index);
      return st.WithContext(fmt::format("attach of volume {}", volume));
    }
    Log()->info("device attached device={} volume={} size_bytes={} read_only={}",
                nbdlink::DevicePath(index), volume, devices_[index].exp->info.size_bytes,
                read_only);
    return EntryLocked(devices_[index]);
  });
}

Task<Result<std::optional<control::DeviceEntry>>> DeviceSet::Detach(std::string device,
                                                                    std::string volume) {
  int index = -1;
  if (!device.empty()) {
    auto parsed = nbdlink::ParseDevicePath(device);
    if (!parsed.ok()) co_return parsed.status();
    index = *parsed;
  }
  std::shared_ptr<nbd::OpenExport> exp;
  control::DeviceEntry entry;
  Status found = co_await RunBlocking(env_, [&]() -> Status {
    std::lock_guard lock(mu_);
    auto it = devices_.end();
    for (auto i = devices_.begin(); i != devices_.end(); ++i) {
      if (index >= 0 ? i->first == index : i->second.rec.volume == volume) it = i;
    }
    if (it == devices_.end()) return Status::NotFound("");
    if (it->second.detaching) {
      return Status::Busy(fmt::format("{} is being detached", nbdlink::DevicePath(it->first)));
    }
    it->second.detaching = true;
    index = it->first;
    volume = it->second.rec.volume;
    exp = it->second.exp;
    entry = EntryLocked(it->second);
    return Status::Ok();
  });
  if (found.IsNotFound()) co_return std::optional<control::DeviceEntry>();
  if (!found.ok()) co_return found;
  const std::string path = nbdlink::DevicePath(index);
  auto undo = [&] {
    return RunBlocking(env_, [&] {
      std::lock_guard lock(mu_);
      if (auto it = devices_.find(index); it != devices_.end()) it->second.detaching = false;
    });
  };
  // What the kernel still caches for the device goes out first (as FLUSH-ended writes),
  // then the volume makes everything durable.
  co_await RunBlocking(env_, [&] {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::fsync(fd) != 0) {
        Log()->warn("fsync before detach failed device={} error=\"{}\"", path,
                    std::strerror(errno));
      }
      ::close(fd);
    }
  });
  if (exp && !entry.read_only) {
    if (Status st = co_await exp->device->Flush(); !st.ok()) {
      if (options_.fenced && options_.fenced(volume)) {
        Log()->warn(
            "detaching the device of a fenced volume without its flush device={} "
            "volume={} error=\"{}\"",
            path, volume, st.ToString());
      } else {
        co_await undo();
        co_return st.WithContext(
            fmt::format("flush of volume {} before detaching {}", volume, path));
      }
    }
  }
  Status st = co_await RunBlocking(env_, [&]() -> Status {
    Status s = nbdlink::Disconnect(index);
    if (!s.ok()) {
      auto configured = nbdlink::Configured(index);
      if (configured.ok() && !*configured) s = Status::Ok();  // gone already
    }
    if (!s.ok()) return s;
    std::lock_guard lock(mu_);
    devices_.erase(index);
    return SaveLocked();
  });
  if (!st.ok()) {
    co_await undo();
    co_return st.WithContext(fmt::format("detach of {} (volume {})", path, volume));
  }
  // The connection holds the volume attached until it closed: wait (briefly) so that a
  // volume.release right after the detach finds it free.
  std::weak_ptr<nbd::OpenExport> weak = exp;
  exp.reset();
  for (uint64_t waited = 0; weak.lock() && waited < kCloseWaitMs; waited += 20) {
    co_await SleepFor(env_, 20 * kNanosPerMilli);
  }
  Log()->info("device detached device={} volume={}", path, volume);
  entry.connected = false;
  co_return std::optional<control::DeviceEntry>(entry);
}

Task<std::vector<control::DeviceEntry>> DeviceSet::List() {
  co_return co_await RunBlocking(env_, [this] {
    std::lock_guard lock(mu_);
    std::vector<control::DeviceEntry> out;
    for (const auto& [index, d] : devices_) out.push_back(EntryLocked(d));
    return out;
  });
}

Task<Status> DeviceSet::Resized(std::string volume, uint64_t size_bytes) {
  co_return co_await RunBlocking(env_, [&] { return DoResize(volume, size_bytes); });
}

Status DeviceSet::DoResize(const std::string& volume, uint64_t size_bytes) {
  std::lock_guard lock(mu_);
  for (auto& [index, d] : devices_) {
    if (d.rec.volume != volume) continue;
    // The session first (so requests past the old end are valid when the kernel sends
    // them: its strand runs the new size before any read queued after the reconfigure),
    // then the kernel.
    d.size_bytes = size_bytes;
    if (auto c = d.conn.lock()) c->SetSize(size_bytes);
    Status st = nbdlink::Reconfigure(index, d.rec.backend, -1, size_bytes);
    if (!st.ok()) return st.WithContext("volume " + volume);
    Log()->info("device resized device={} volume={} size_bytes={}", nbdlink::DevicePath(index),
                volume, size_bytes);
  }
  return Status::Ok();
}

void DeviceSet::Stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
}

void DeviceSet::Close() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  for (auto& [index, d] : devices_) {
    d.exp.reset();
    d.connected = false;
  }
}

void DeviceSet::OnClosed(uint64_t generation) {
  std::lock_guard lock(mu_);
  for (auto& [index, d] : devices_) {
    if (d.generation != generation) continue;
    d.connected = false;
    d.exp.reset();
    if (stopping_ || d.detaching) return;
    Log()->warn("device connection closed, reattaching device={} volume={}",
                nbdlink::DevicePath(index), d.rec.volume);
    ScheduleReconnectLocked(d);
    return;
  }
}

void DeviceSet::ScheduleReconnectLocked(Device& d) {
  const uint64_t delay = std::min(kRetryMaxNs, kRetryMinNs << std::min<uint32_t>(d.retries, 6));
  ++d.retries;
  d.generation = next_generation_++;  // the retry's token; no connection has it
  const int index = d.rec.index;
  const uint64_t gen = d.generation;
  env_.PostAfter(delay, [this, index, gen] {
    env_.PostBlocking([this, index, gen] { Reconnect(index, gen); });
  });
}

void DeviceSet::Reconnect(int index, uint64_t generation) {
  std::lock_guard lock(mu_);
  auto it = devices_.find(index);
  if (stopping_ || it == devices_.end() || it->second.generation != generation ||
      it->second.detaching) {
    return;
  }
  Device& d = it->second;
  const std::string path = nbdlink::DevicePath(index);
  auto configured = nbdlink::Configured(index);
  if (configured.ok() && !*configured) {
    Log()->warn("device no longer configured in the kernel, record dropped device={} volume={}",
                path, d.rec.volume);
    devices_.erase(it);
    if (Status st = SaveLocked(); !st.ok()) {
      Log()->error("device state not saved error=\"{}\"", st.ToString());
    }
    return;
  }
  if (Status st = ServeLocked(d, /*reconfigure=*/true); !st.ok()) {
    Log()->warn("device reattach failed, retrying device={} volume={} error=\"{}\"", path,
                d.rec.volume, st.ToString());
    ScheduleReconnectLocked(d);
    return;
  }
  Log()->info("device reattached device={} volume={}", path, d.rec.volume);
}

}  // namespace portal::daemon
