// Daemon: config -> control socket -> object store -> volume -> NBD server. The process
// shell (bin/portalbd/main.cc) parses flags, handles signals and calls Start()/Stop().
//
// Start() binds the control socket first: if another portalbd answers on it, Start()
// fails before touching the store (opening the volume would fence the live daemon).
// Start() fails with one clear line for a live daemon on the control socket, a bad
// storage URL, a missing bucket or directory, refused credentials, an unreachable
// endpoint, a store that ignores conditional writes (unless unsafe_no_fencing), an
// unwritable [record] path, or an address that cannot be bound.
// Stop() stops accepting control requests and NBD connections, lets both finish what is
// in flight, finishes the [record] trace (complete JSON), makes everything durable and
// closes the volume, all within [storage] stop_timeout_ms: at that deadline the volume
// gives up on what the store has not taken (Volume::GiveUpAt), requests waiting for
// durability fail, and Stop() returns an error; NotDurableSummary() then says what was
// left behind. A request or store call that ignores the deadline (one S3 request with
// its own retries) can keep Stop() a little longer; the process shell bounds that.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "control/protocol.h"
#include "util/buffer_pool.h"
#include "util/buffer_recycler.h"
#include "util/status.h"

namespace portal {
class RealEnv;
namespace cache {
class DiskCache;
struct CacheEntry;
template <typename V>
class LruCache;
using BlockCache = LruCache<CacheEntry>;
}  // namespace cache
namespace crypto {
class Keyring;
}  // namespace crypto
namespace objstore {
class CountingStore;
class S3Store;
}  // namespace objstore
namespace nbd {
class Server;
class ExportCatalog;
class TlsContext;
}  // namespace nbd
namespace volume {
class Volume;
class WriteBudget;
struct VolumeOptions;
}  // namespace volume
namespace control {
class Server;
}
namespace trace {
class Recorder;
class RecordingCatalog;
}  // namespace trace
namespace metrics {
class MetricsServer;
class NbdMetrics;
struct VolumeSample;
}  // namespace metrics
}  // namespace portal

namespace portal::daemon {

class ControlHandler;
class DeviceSet;
class OwnerRecords;
class VolumeSet;

class Daemon {
 public:
  explicit Daemon(config::Config cfg);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  Status Start();
  Status Stop();

  // "127.0.0.1:10809" as bound (the real port when 0 was configured).
  std::string nbd_address() const;
  // One log line with size, storage, epoch, fencing, objects, requests by kind (store
  // calls), buffers, cache; on s3:// also HTTP requests sent and retried.
  std::string StatusLine();
  // What `portalctl status` shows. Thread-safe; call only while started.
  control::DaemonStatus StatusReport();
  // "N bytes not durable (store failing since T: error)" while written data is not in
  // the store, else "". Thread-safe, also while Stop() runs on another thread (a second
  // signal) and after it returned (what the stop left behind).
  std::string NotDurableSummary();

 private:
  std::string HttpCounts() const;
  std::string DiskCacheCounts() const;
  // [metrics] address set: serves /metrics, NBD requests counted through catalog_.
  Status StartMetrics();
  // Each served volume's counters (and the store's, with the first) as the metrics
  // server shows them.
  std::vector<metrics::VolumeSample> MetricsSamples();
  // Opens the volumes [storage] volumes names (docs/volumes.md).
  Status OpenVolumes();
  // The volume `portalctl status` and the status line describe: the default volume if
  // served, else the first by name; null if none is served.
  std::shared_ptr<volume::Volume> PrimaryVolume() const;
  // Ends the [record] trace (after the NBD server stopped) and logs what it holds.
  Status FinishRecording();

  config::Config cfg_;
  // Segment and object buffers for reuse, handed to the store and the volume: declared
  // before them, so it outlives them.
  BufferPool buffer_pool_;
  // NBD WRITE payloads and write-buffer slabs, recycled (util/buffer_recycler.h): idle
  // memory held at most [lsm] max_unflushed_bytes, what the write buffers may hold. Handed
  // to the server and the volumes; declared before them, so it outlives them.
  BufferRecycler recycler_{cfg_.max_unflushed_bytes};
  // [lsm] max_unflushed_bytes, one write-buffer budget for every volume (docs/volumes.md
  // "One budget"); declared before the volumes and even the env, so it outlives them: a
  // volume leaves it when destroyed, which may be as the env drops its last coroutines.
  std::unique_ptr<volume::WriteBudget> write_budget_;
  std::unique_ptr<RealEnv> env_;
  // [cache] disk_size_bytes > 0 (not on memory://): chunks on local disk, shared by the
  // volumes; declared before them, so it outlives them.
  std::unique_ptr<cache::DiskCache> disk_cache_;
  // [storage] encryption_key_file set: the volumes' keys; declared before them, so it
  // outlives them.
  std::shared_ptr<const crypto::Keyring> keyring_;
  // [lsm] block_cache_size_bytes, one cache for every volume (docs/volumes.md "One
  // budget"); declared before the volumes, so it outlives them.
  std::unique_ptr<cache::BlockCache> block_cache_;
  std::shared_ptr<trace::Recorder> recorder_;  // [record] path set; shared with observers
  std::unique_ptr<objstore::CountingStore> store_;
  objstore::S3Store* s3_ = nullptr;  // inside store_ when the URL is s3://
  // [control] listen set: where this daemon's volumes' writers are, for the CSI
  // controller (daemon/owner_record.h); declared before the volumes, so it outlives them.
  std::unique_ptr<OwnerRecords> owners_;
  std::unique_ptr<VolumeSet> volumes_;
  std::mutex summary_mu_;  // volumes_ changing (Stop) vs NotDurableSummary()
  std::string left_behind_;  // GUARDED_BY(summary_mu_): NotDurableSummary() after Stop
  std::unique_ptr<nbd::ExportCatalog> catalog_;
  trace::RecordingCatalog* recording_ = nullptr;  // catalog_ itself when recording
  std::unique_ptr<metrics::MetricsServer> metrics_;  // [metrics] address set
  std::unique_ptr<metrics::NbdMetrics> nbd_metrics_;
  std::unique_ptr<nbd::TlsContext> tls_;  // [nbd] tls on or require; outlives server_
  std::unique_ptr<nbd::Server> server_;
  // Kernel NBD devices the daemon attached (devices.h); needs server_ and catalog_.
  std::unique_ptr<DeviceSet> devices_;
  std::unique_ptr<ControlHandler> control_handler_;
  std::unique_ptr<control::Server> control_;
  std::unique_ptr<nbd::TlsContext> control_tls_;  // [control] tls_cert; outlives control_tcp_
  std::unique_ptr<control::Server> control_tcp_;  // [control] listen
  // Binds [control] listen (before the store is touched: a taken port stops us first).
  Status ListenControlTcp();
  bool started_ = false;
  bool stopped_ = false;
};

// Volume options for a configuration (memory:// gets its in-process tuning).
volume::VolumeOptions VolumeOptionsFor(const config::Config& cfg);

}  // namespace portal::daemon
