#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "cache/block_cache.h"
#include "cache/disk_cache.h"
#include "control/auth.h"
#include "control/server.h"
#include "crypto/aead.h"
#include "daemon/attachments.h"
#include "daemon/catalog.h"
#include "daemon/control_handler.h"
#include "daemon/devices.h"
#include "daemon/nbd_exposure.h"
#include "daemon/owner_record.h"
#include "daemon/volume_set.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "metrics/nbd_metrics.h"
#include "metrics/server.h"
#include "metrics/volume_collector.h"
#include "nbd/export.h"
#include "nbd/server.h"
#include "objstore/counting_store.h"
#include "objstore/s3_store.h"
#include "trace/recorder.h"
#include "trace/recording_catalog.h"
#include "util/buffer_pool.h"
#include "util/log.h"
#include "util/rfc3339.h"
#include "volume/registry.h"
#include "volume/volume.h"
#include "volume/write_budget.h"

namespace portal::daemon {
namespace {
auto Log() { return log::Get("portalbd"); }

// Whether a TCP listen address only takes connections from this machine (a unix socket
// does too). Anything else, a wildcard included, is reachable from a network.
}  // namespace

// The volume turns these into nanoseconds and bytes; Validate()'s bounds keep that exact.
static_assert(config::kMaxGcGraceMs * kNanosPerMilli < (uint64_t{1} << 62));
static_assert(config::kMaxIntervalMs * kNanosPerMilli < (uint64_t{1} << 62));
static_assert(config::kMaxDiskSizeGb < (uint64_t{1} << 33));

volume::VolumeOptions VolumeOptionsFor(const config::Config& cfg) {
  volume::VolumeOptions o;
  o.size_bytes = cfg.disk_size_set ? cfg.size_bytes() : 0;  // 0: keep an existing size
  o.block_size = cfg.block_size;
  o.flush_interval_ms = cfg.flush_interval_ms;
  o.l0_sst_size_bytes = cfg.l0_sst_size_bytes;
  o.max_unflushed_bytes = cfg.max_unflushed_bytes;
  o.upload_window = static_cast<uint32_t>(cfg.upload_window);
  o.block_cache_size_bytes = cfg.block_cache_size_bytes;
  o.read_ahead_max_bytes = cfg.read_ahead_max_bytes;
  o.gc_live_ratio = cfg.gc_live_ratio;
  o.unsafe_no_fencing = cfg.unsafe_no_fencing;
  o.cache_dir = cfg.cache_dir;
  o.salvage = cfg.salvage;
  if (cfg.storage_url == "memory://") {
    // Private to this process and lost with it: no compression (it only costs CPU),
    // block-exact reads, and segments freed as soon as nothing references them.
    o.compress = false;
    o.read_partial_raw_chunks = true;
    o.immediate_segment_free = true;
    // Dead segments are memory to reuse: freed every second, a sequential writer needed a
    // second's worth of fresh pages between frees (page faults were a third of its time).
    o.gc_interval_ms = 200;
    // Garbage is resident memory here, and compacting a map in memory is cheap.
    o.full_compaction_min_bytes = o.l0_sst_size_bytes;
    o.full_compaction_ratio = 0.125;
    o.cache_dir.clear();
  }
  if (cfg.gc_grace_ms) o.gc_grace_ms = *cfg.gc_grace_ms;  // the file wins over the above
  if (cfg.gc_interval_ms) o.gc_interval_ms = *cfg.gc_interval_ms;
  return o;
}

Daemon::Daemon(config::Config cfg) : cfg_(std::move(cfg)) {}

Daemon::~Daemon() { (void)Stop(); }

constexpr size_t kRopeStorePoolBytes = 64ull << 20;
// After the stop deadline, requests that failed then still need their replies written.
constexpr uint64_t kDrainAfterDeadlineMs = 2000;

Status Daemon::ListenControlTcp() {
  if (cfg_.control_listen.empty()) return Status::Ok();
  auto token = control::LoadTokenFile(cfg_.control_token_file);
  if (!token.ok()) return token.status();
  if (!cfg_.control_tls_cert.empty()) {
    auto tls = nbd::TlsContext::CreateServer({.cert_file = cfg_.control_tls_cert,
                                              .key_file = cfg_.control_tls_key,
                                              .ca_file = "",
                                              .psk_file = ""});
    if (!tls.ok()) return tls.status().WithContext("control");
    control_tls_ = std::move(*tls);
    for (const std::string& w : control_tls_->warnings()) Log()->warn("control.{}", w);
  }
  control::Server::Options o;
  o.tcp_address = cfg_.control_listen;
  o.token = std::move(*token);
  o.tls = control_tls_.get();
  o.handshake_timeout_ms = cfg_.handshake_timeout_ms;
  control_tcp_ = std::make_unique<control::Server>(*env_, *control_handler_, o);
  RETURN_IF_ERROR(control_tcp_->Listen());
  Log()->info("control listening address={} tls={}", control_tcp_->address(),
              control_tls_ ? "on" : "off");
  if (std::string w = ControlExposureWarning(control_tcp_->address(), control_tls_ != nullptr);
      !w.empty()) {
    Log()->warn("{}", w);
  }
  if (cfg_.control_advertise.empty() && (cfg_.control_listen.starts_with("0.0.0.0:") ||
                                         cfg_.control_listen.starts_with("[::]:"))) {
    Log()->warn(
        "control.listen {} is a wildcard: owner records will name it as is; set "
        "control.advertise to the address the controller should use",
        cfg_.control_listen);
  }
  return Status::Ok();
}

Status Daemon::Start() {
  env_ = std::make_unique<RealEnv>();
  env_->Start();
  // The control socket first: a live daemon on it must stop us before we open (and so
  // fence) the volume it serves.
  control_handler_ = std::make_unique<ControlHandler>();
  control::Server::Options co;
  co.path = cfg_.socket;
  co.group = cfg_.control_socket_group;
  control_ = std::make_unique<control::Server>(*env_, *control_handler_, co);
  if (Status st = control_->Listen(); !st.ok()) return st;
  if (Status st = ListenControlTcp(); !st.ok()) return st;
  // The trace file next: an unwritable [record] path stops us before the store is touched.
  if (!cfg_.record_path.empty()) {
    auto rec = trace::Recorder::Create({cfg_.record_path, cfg_.record_workload}, env_->NowNanos(),
                                       env_->WallNanos());
    if (!rec.ok()) return rec.status().WithContext("record.path");
    recorder_ = std::move(*rec);
  }
  // The keys next: a bad key file stops us before the store is touched.
  if (!cfg_.encryption_key_file.empty()) {
    auto keys = crypto::Keyring::Load(cfg_.encryption_key_file, cfg_.encryption_old_key_files);
    if (!keys.ok()) return keys.status().WithContext("storage.encryption_key_file");
    keyring_ = std::move(*keys);
    Log()->info("encryption at rest on key_id={} keys={}", keyring_->key_id(), keyring_->key_ids());
  }
  // TLS credentials next: a missing file or a key not matching its certificate stops us
  // before the store is touched.
  nbd::TlsMode tls_mode = *nbd::ParseTlsMode(cfg_.tls);  // Validate() checked it
  if (tls_mode != nbd::TlsMode::kOff) {
    auto tls = nbd::TlsContext::CreateServer({.cert_file = cfg_.tls_cert,
                                              .key_file = cfg_.tls_key,
                                              .ca_file = cfg_.tls_ca,
                                              .psk_file = cfg_.tls_psk_file});
    if (!tls.ok()) return tls.status().WithContext("nbd");
    tls_ = std::move(*tls);
    for (const std::string& w : tls_->warnings()) Log()->warn("nbd.{}", w);
  }
  if (cfg_.storage_url.starts_with("file://")) {
    // Like the original: a missing storage directory is created (and said so).
    std::string dir = cfg_.storage_url.substr(7);
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (ec) return Status::IOError("cannot create storage directory " + dir + ": " + ec.message());
      Log()->info("created storage directory path={}", dir);
    }
  }
  objstore::StoreOptions store_options;
  store_options.buffer_pool = &buffer_pool_;
  if (!cfg_.ca_file.empty() && cfg_.storage_url.starts_with("s3://")) {
    auto s3 = s3::ClientOptionsFromEnv();  // the file's CA wins over AWS_CA_BUNDLE
    if (!s3.ok()) return s3.status().WithContext("storage.url " + cfg_.storage_url);
    s3->ca_file = cfg_.ca_file;
    store_options.s3 = std::move(*s3);
  }
  auto opened = objstore::OpenStore(cfg_.storage_url, *env_, store_options);
  if (!opened.ok()) return opened.status().WithContext("storage.url " + cfg_.storage_url);
  s3_ = dynamic_cast<objstore::S3Store*>(opened->get());
  store_ = std::make_unique<objstore::CountingStore>(std::move(*opened));
  if (cfg_.storage_url == "memory://") {
    // Segments stay in the write buffer's memory (a Rope) here, and GC relocations in
    // their read buffers (a Rope too); little passes through the pool (relocation
    // segments did, and it held ~190 MiB for 4 hits to 13 misses).
    buffer_pool_.set_budget(kRopeStorePoolBytes);
  }
  if (Status st = BlockOn(store_->CheckAccess()); !st.ok()) {
    return st.WithContext("storage " + cfg_.storage_url);
  }
  volume::VolumeOptions volume_options = VolumeOptionsFor(cfg_);
  volume_options.buffer_pool = &buffer_pool_;
  volume_options.recycler = &recycler_;
  volume_options.keyring = keyring_.get();
  block_cache_ = std::make_unique<cache::BlockCache>(*env_, cfg_.block_cache_size_bytes);
  volume_options.block_cache = block_cache_.get();
  write_budget_ = std::make_unique<volume::WriteBudget>(*env_, cfg_.max_unflushed_bytes);
  volume_options.write_budget = write_budget_.get();
  if (cfg_.disk_cache_size_bytes > 0 && cfg_.storage_url != "memory://") {
    const std::string dir =
        cfg_.disk_cache_dir.empty() ? cfg_.cache_dir + "/chunks" : cfg_.disk_cache_dir;
    disk_cache_ = std::make_unique<cache::DiskCache>(*env_, cache::DirectoryFiles(dir),
                                                     cfg_.disk_cache_size_bytes);
    BlockOn(disk_cache_->Load());  // a cache that cannot start is off; portalbd goes on
    volume_options.disk_cache = disk_cache_.get();
  }
  volumes_ = std::make_unique<VolumeSet>(*env_, *store_, volume_options, cfg_.stop_timeout_ms);
  if (control_tcp_) {
    std::string node = cfg_.control_node_id;
    if (node.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      node = host;
    }
    const std::string advertise =
        cfg_.control_advertise.empty() ? control_tcp_->address() : cfg_.control_advertise;
    owners_ = std::make_unique<OwnerRecords>(*env_, *store_, node, advertise);
    volumes_->set_owner_records(owners_.get());
    // The node registry (daemon/attachments.h): the CSI controller publishes volumes only
    // to registered nodes. A configured node_id must be a valid one; a host name that is
    // not (upper case, too long) only leaves this daemon unregistered.
    Status registered =
        BlockOn(RegisterNode(*store_, {node, advertise, FormatRfc3339(env_->WallNanos())}));
    if (!registered.ok() && (!cfg_.control_node_id.empty() || registered.code() != Status::Code::kInvalidArgument)) {
      return registered;
    }
    if (!registered.ok()) Log()->warn("{}: not registered as a node", registered.message());
  }
  if (Status st = OpenVolumes(); !st.ok()) return st;

  catalog_ = std::make_unique<VolumeCatalog>(*volumes_);
  if (recorder_) {
    auto primary = PrimaryVolume();
    (void)recorder_->SetDeviceSize(primary ? primary->size_bytes() : 0);
    auto recording = std::make_unique<trace::RecordingCatalog>(std::move(catalog_), recorder_,
                                                               *env_, "portalbd");
    recording_ = recording.get();
    catalog_ = std::move(recording);
  }

  if (Status st = StartMetrics(); !st.ok()) return st.WithContext("metrics.address");

  nbd::Server::Options so;
  so.address = cfg_.address;
  so.max_connections = cfg_.max_connections;
  so.session.tls = tls_mode;
  so.session.recycler = &recycler_;
  so.tls = tls_.get();
  so.max_inflight_bytes = cfg_.max_inflight_bytes;
  so.handshake_timeout_ms = cfg_.handshake_timeout_ms;
  so.peer.request_timeout_ms = cfg_.request_timeout_ms;
  so.peer.idle_timeout_ms = cfg_.idle_timeout_ms;
  server_ = std::make_unique<nbd::Server>(*env_, *catalog_, so);
  if (Status st = server_->Listen(); !st.ok()) return st;
  devices_ = std::make_unique<DeviceSet>(
      *env_, *catalog_, *server_,
      DeviceSet::Options{.state_file = cfg_.device_state_file,
                         .io_timeout_ms = cfg_.device_io_timeout_ms,
                         .reattach_timeout_ms = cfg_.device_reattach_timeout_ms,
                         .fenced = [this](const std::string& volume) {
                           auto v = volumes_->Find(volume);
                           return v && v->volume->fenced();
                         }});
  control_handler_->Attach(volumes_.get(), [this] { return StatusReport(); });
  control_handler_->AttachDevices(devices_.get());
  control_->Start();
  if (control_tcp_) control_tcp_->Start();
  started_ = true;
  auto primary = PrimaryVolume();
  Log()->info("portalbd started socket={} size_gb={} nbd={} storage=\"{}\" recording={} "
              "volumes={}",
              cfg_.socket, primary ? primary->size_bytes() >> 30 : 0, server_->bound_address(),
              cfg_.storage_url, !cfg_.record_path.empty(), volumes_->All().size());
  Log()->info("control socket listening path={}", control_->path());
  if (recorder_) {
    Log()->info("recording requests path={} workload={}", recorder_->path(), cfg_.record_workload);
  }
  server_->Start();
  Log()->info("NBD server listening address={}", server_->bound_address());
  // Kernel devices of a previous run get their connections back (they queue I/O until then).
  if (Status st = devices_->Restore(); !st.ok()) return st.WithContext("device.state_file");
  if (tls_) {
    Log()->info("NBD TLS tls={} client_certs={} psk_identities={}", cfg_.tls,
                tls_->verifies_peer() ? "required" : "unchecked", tls_->psk_identities());
  } else if (std::string w = NbdExposureWarning(server_->bound_address(), /*tls_on=*/false);
             !w.empty()) {
    Log()->warn("{}", w);
  }
  for (const auto& v : volumes_->All()) {
    Log()->info("NBD server accepting connections export={} size_bytes={}", v->name,
                v->volume->size_bytes());
  }
  return Status::Ok();
}

Status Daemon::OpenVolumes() {
  if (!cfg_.volumes) {  // "all": the default volume, then every registered one
    if (Status st = BlockOn(volumes_->OpenDefault()); !st.ok()) return st;
    auto names = BlockOn(volumes_->registry().ListNames());
    if (!names.ok()) return names.status().WithContext("storage.volumes");
    for (const std::string& name : *names) {
      // One damaged or half-deleted volume must not keep the others from being served.
      if (Status st = BlockOn(volumes_->Open(name)); !st.ok()) {
        Log()->error("volume not opened name={} error=\"{}\"", name, st.ToString());
      }
    }
    return Status::Ok();
  }
  for (const std::string& name : *cfg_.volumes) {
    if (name == volume::kDefaultVolumeName) {
      if (Status st = BlockOn(volumes_->OpenDefault()); !st.ok()) return st;
      continue;
    }
    if (Status st = volume::ValidateVolumeName(name); !st.ok()) {
      return st.WithContext("storage.volumes");
    }
    Status st = BlockOn(volumes_->Open(name));
    if (st.IsNotFound()) {
      // Listed but not registered yet: created like the default volume on a new URL.
      const uint64_t size = cfg_.size_bytes();
      Log()->info("creating volume name={} size_bytes={} (listed in storage.volumes)", name, size);
      st = BlockOn(volumes_->Create(name, size)).status();
    }
    if (!st.ok()) return st.WithContext("storage.volumes");
  }
  return Status::Ok();
}

std::shared_ptr<volume::Volume> Daemon::PrimaryVolume() const {
  if (!volumes_) return nullptr;
  if (auto v = volumes_->Find(volume::kDefaultVolumeName)) return v->volume;
  auto all = volumes_->All();
  return all.empty() ? nullptr : all.front()->volume;
}

Status Daemon::Stop() {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  Status result;
  // One deadline for the whole stop. The volume enforces it: requests waiting for
  // durability (FLUSH, FUA, stalled writes, a snapshot's flush) fail at the deadline, so
  // the drains below end soon after it, answered.
  const uint64_t deadline =
      env_ ? env_->NowNanos() + cfg_.stop_timeout_ms * kNanosPerMilli : 0;
  auto drain_ms = [&] {
    const uint64_t now = env_->NowNanos();
    return (deadline > now ? (deadline - now) / kNanosPerMilli : 0) + kDrainAfterDeadlineMs;
  };
  if (volumes_) volumes_->GiveUpAt(deadline);
  if (s3_ != nullptr && env_) {
    // A request in flight retries inside the S3 client (up to ~15 s when the endpoint
    // refuses connections): make it stop with the volume's retries.
    env_->PostAfter(deadline - env_->NowNanos(), [s3 = s3_] { s3->client().StopRetrying(); });
  }
  // Control first: no snapshot or restore may start once the volume begins closing;
  // requests in flight finish and are answered.
  if (control_) control_->Shutdown(drain_ms());
  if (control_tcp_) control_tcp_->Shutdown(drain_ms());
  // Kernel devices stay configured: their connections close with the server and are not
  // replaced; the next daemon reattaches them (devices.h).
  if (devices_) devices_->Stop();
  if (server_) server_->Shutdown(drain_ms());
  if (devices_) devices_->Close();
  Status traced = FinishRecording();  // no request is answered any more
  if (volumes_) {
    result = BlockOn(volumes_->CloseAll(deadline));
    if (started_) Log()->info("{}", StatusLine());
  }
  if (metrics_) metrics_->Stop();  // scrapes read volumes_
  {
    std::lock_guard lock(summary_mu_);
    if (volumes_) left_behind_ = volumes_->NotDurableSummary();
    volumes_.reset();
  }
  if (result.ok()) result = traced;
  if (env_) env_->Stop();
  return result;
}

std::string Daemon::NotDurableSummary() {
  std::lock_guard lock(summary_mu_);
  return volumes_ ? volumes_->NotDurableSummary() : left_behind_;
}

Status Daemon::FinishRecording() {
  if (!recorder_) return Status::Ok();
  Status st = recorder_->Finish(env_->NowNanos());
  if (!st.ok()) {
    Log()->error("trace not finished path={} error=\"{}\"", recorder_->path(), st.ToString());
    return st.WithContext("record.path");
  }
  Log()->info("trace written path={} ops={}{} connections={} append_errors={}", recorder_->path(),
              recorder_->ops_written(), recorder_->CountsByType(),
              recording_ ? recording_->connections() : 0,
              recording_ ? recording_->record_errors() : 0);
  return Status::Ok();
}

control::DaemonStatus Daemon::StatusReport() {
  control::DaemonStatus d;
  d.version = PORTALBD_VERSION;
  auto primary = PrimaryVolume();
  if (!primary) return d;
  volume::VolumeStats s = primary->stats();
  d.size_bytes = s.size_bytes;
  d.block_size = s.block_size;
  d.storage_url = s.storage_url;
  d.nbd_address = nbd_address();
  d.volume_uuid = s.volume_uuid;
  d.epoch = s.epoch;
  d.fenced = s.fenced;
  d.manifest_number = s.manifest_number;
  d.segments = s.segments;
  d.segment_bytes = s.segment_bytes;
  for (uint64_t n : s.ssts_per_level) d.map_ssts += n;
  d.map_bytes = s.map_bytes;
  d.objects_stored = d.segments + d.map_ssts;
  d.bytes_stored = d.segment_bytes + d.map_bytes;
  d.live_bytes = s.live_data_blocks * s.block_size;
  d.buffer_bytes = s.active_buffer_bytes + s.sealed_buffer_bytes;
  d.max_unflushed_bytes = cfg_.max_unflushed_bytes;
  d.cache_bytes = s.cache.usage_bytes;
  d.cache_capacity_bytes = s.cache.capacity_bytes;
  d.cache_hits = s.cache.hits;
  d.cache_misses = s.cache.misses;
  d.write_stalls = s.write_stalls;
  d.shadowed_bytes = s.shadowed_blocks * s.block_size;
  d.full_compactions = s.full_compactions;
  d.corrupt_refetches = s.corrupt_refetches;
  d.read_ahead_gets = s.read_ahead_gets;
  d.read_ahead_bytes = s.read_ahead_bytes;
  d.read_ahead_hits = s.read_ahead_hits;
  d.read_ahead_wasted = s.read_ahead_wasted;
  d.read_ahead_failed = s.read_ahead_failed;
  d.snapshots = s.snapshots;
  d.nbd_connections = server_ ? server_->connection_count() : 0;
  if (s.store_failing_since_ns != 0) {
    d.store_failing_since = FormatRfc3339(s.store_failing_since_ns);
    d.store_failed_attempts = s.store_failed_attempts;
    d.store_error = s.store_error;
  }
  if (disk_cache_) {
    cache::DiskCacheStats dc = disk_cache_->stats();
    d.disk_cache_enabled = dc.enabled;
    d.disk_cache_bytes = dc.usage_bytes;
    d.disk_cache_capacity_bytes = dc.capacity_bytes;
    d.disk_cache_hits = dc.hits;
    d.disk_cache_misses = dc.misses;
    d.disk_cache_damaged = dc.damaged;
  }
  if (store_) {
    objstore::StoreStats st = store_->stats();
    for (size_t i = 0; i < objstore::kNumOpKinds; ++i) {
      const auto kind = static_cast<objstore::OpKind>(i);
      const objstore::OpStats& o = st[kind];
      if (o.calls == 0) continue;
      d.requests.push_back({std::string(objstore::OpKindName(kind)), o.calls, o.errors, o.bytes});
    }
  }
  return d;
}

// The NBD request metrics' volume label: the daemon's (requests of every export).
constexpr const char* kVolumeLabel = "portalbd";

Status Daemon::StartMetrics() {
  if (cfg_.metrics_address.empty()) return Status::Ok();
  metrics_ = std::make_unique<metrics::MetricsServer>();
  nbd_metrics_ = std::make_unique<metrics::NbdMetrics>(metrics_->registry(), kVolumeLabel, *env_);
  catalog_ = nbd_metrics_->Wrap(std::move(catalog_));
  metrics_->Add(std::make_shared<metrics::VolumeCollector>(
      [this] { return MetricsSamples(); }));
  if (Status st = metrics_->Start(cfg_.metrics_address); !st.ok()) return st;
  Log()->info("metrics server listening address={} path=/metrics", metrics_->bound_address());
  return Status::Ok();
}

std::vector<metrics::VolumeSample> Daemon::MetricsSamples() {
  std::vector<metrics::VolumeSample> out;
  if (!volumes_) return out;
  for (const auto& v : volumes_->All()) {
    metrics::VolumeSample m;
    m.volume = v->name;
    volume::VolumeStats s = v->volume->stats();
    m.size_bytes = s.size_bytes;
    m.epoch = s.epoch;
    m.fenced = s.fenced;
    m.snapshots = s.snapshots;
    m.nbd_connections = static_cast<uint64_t>(v->attached.load());
    if (store_ && out.empty()) {  // one store for all: counted once, with the first volume
      objstore::StoreStats st = store_->stats();
      for (size_t i = 0; i < objstore::kNumOpKinds; ++i) {
        const auto kind = static_cast<objstore::OpKind>(i);
        const objstore::OpStats& o = st[kind];
        metrics::StoreKindSample k{std::string(objstore::OpKindName(kind)), o.calls, o.errors, {}};
        // LIST counts entries, not bytes (objstore/counting_store.h).
        if (kind != objstore::OpKind::kList) k.bytes = o.bytes;
        m.store.push_back(std::move(k));
      }
    }
    if (s3_ != nullptr && out.empty()) {
      s3::Client::Stats h = s3_->client().stats();
      m.http_requests = h.attempts;
      m.http_retries = h.retries;
    }
    m.store_failing = s.store_failing_since_ns != 0;
    m.buffer_bytes = s.active_buffer_bytes + s.sealed_buffer_bytes;
    m.buffer_limit_bytes = cfg_.max_unflushed_bytes;
    m.write_stalls = s.write_stalls;
    if (write_budget_ && out.empty()) {  // one budget for all: with the first volume
      volume::WriteBudgetStats wb = write_budget_->stats();
      m.write_budget = metrics::WriteBudgetSample{.limit_bytes = wb.limit_bytes,
                                                  .used_bytes = wb.used_bytes,
                                                  .high_water_bytes = wb.high_water_bytes,
                                                  .waits = wb.waits};
    }
    m.cache_hits = s.cache.hits;
    m.cache_misses = s.cache.misses;
    m.cache_bytes = s.cache.usage_bytes;
    m.cache_capacity_bytes = s.cache.capacity_bytes;
    if (disk_cache_ && out.empty()) {  // one disk cache for all: with the first volume
      cache::DiskCacheStats dc = disk_cache_->stats();
      m.disk_cache = metrics::DiskCacheSample{.hits = dc.hits,
                                              .misses = dc.misses,
                                              .damaged = dc.damaged,
                                              .inserts = dc.inserts,
                                              .dropped = dc.dropped,
                                              .evictions = dc.evictions,
                                              .bytes = dc.usage_bytes,
                                              .capacity_bytes = dc.capacity_bytes,
                                              .entries = dc.entries};
    }
    m.read_ahead = {.gets = s.read_ahead_gets,
                    .bytes = s.read_ahead_bytes,
                    .hits = s.read_ahead_hits,
                    .wasted = s.read_ahead_wasted,
                    .failed = s.read_ahead_failed};
    m.segments = s.segments;
    m.segment_bytes = s.segment_bytes;
    for (uint64_t n : s.ssts_per_level) m.map_ssts += n;
    m.map_bytes = s.map_bytes;
    m.live_bytes = s.live_data_blocks * s.block_size;
    m.shadowed_bytes = s.shadowed_blocks * s.block_size;
    m.gc_reclaimed_bytes = s.gc_reclaimed_bytes;
    m.full_compactions = s.full_compactions;
    m.corrupt_refetches = s.corrupt_refetches;
    out.push_back(std::move(m));
  }
  return out;
}

std::string Daemon::nbd_address() const { return server_ ? server_->bound_address() : ""; }

std::string Daemon::StatusLine() {
  auto primary = PrimaryVolume();
  if (!primary) return "no volume open";
  volume::VolumeStats s = primary->stats();
  const BufferPool& pool = buffer_pool_;
  std::string levels;
  for (uint64_t n : s.ssts_per_level) {
    if (!levels.empty()) levels.push_back('/');
    levels.append(std::to_string(n));
  }
  return fmt::format(
      "status size_bytes={} storage=\"{}\" epoch={} fenced={} manifest={} segments={} "
      "segment_bytes={} ssts={} map_bytes={} buffer_bytes={} cache_bytes={} cache_hits={} "
      "cache_misses={} write_stalls={} snapshots={} shadowed_bytes={} full_compactions={} "
      "corrupt_refetches={} read_ahead_gets={} read_ahead_bytes={} read_ahead_hits={} "
      "read_ahead_wasted={} read_ahead_failed={} pool_bytes={} pool_hits={} pool_misses={}{} "
      "requests=\"{}\"{}{}",
      s.size_bytes, s.storage_url, s.epoch, s.fenced, s.manifest_number, s.segments,
      s.segment_bytes, levels.empty() ? "0" : levels, s.map_bytes,
      s.active_buffer_bytes + s.sealed_buffer_bytes, s.cache.usage_bytes, s.cache.hits,
      s.cache.misses, s.write_stalls, s.snapshots, s.shadowed_blocks * s.block_size,
      s.full_compactions, s.corrupt_refetches, s.read_ahead_gets, s.read_ahead_bytes,
      s.read_ahead_hits, s.read_ahead_wasted, s.read_ahead_failed, pool.pooled_bytes(),
      pool.hits(), pool.misses(), DiskCacheCounts(),
      store_ ? store_->stats().ToString() : "", HttpCounts(),
      s.store_failing_since_ns == 0
          ? ""
          : fmt::format(" store_failing_since={} store_error=\"{}\"",
                        FormatRfc3339(s.store_failing_since_ns), s.store_error));
}

std::string Daemon::DiskCacheCounts() const {
  if (!disk_cache_) return "";
  cache::DiskCacheStats dc = disk_cache_->stats();
  return fmt::format(" disk_cache_enabled={} disk_cache_bytes={} disk_cache_hits={} "
                     "disk_cache_misses={} disk_cache_damaged={} disk_cache_inserts={}",
                     dc.enabled, dc.usage_bytes, dc.hits, dc.misses, dc.damaged, dc.inserts);
}

std::string Daemon::HttpCounts() const {
  if (s3_ == nullptr) return "";
  // HTTP requests as sent: retries and list pages included (`requests` counts calls).
  s3::Client::Stats h = s3_->client().stats();
  return fmt::format(" http_requests={} http_retries={}", h.attempts, h.retries);
}

}  // namespace portal::daemon
