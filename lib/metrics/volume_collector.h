// VolumeCollector: the volume's and the object store's own counters, read when Prometheus
// scrapes (no work on the I/O path). A sampler callback returns one VolumeSample per
// volume (the daemon has one today); each becomes a set of series labelled
// volume="<name>". Names, types and meanings (README "Metrics"):
//
//   portalbd_store_requests_total{kind}   store calls (GET, HEAD, PUT, PUT_IF_ABSENT,
//   portalbd_store_errors_total{kind}       DELETE, LIST, ...), failed calls (NotFound
//   portalbd_store_bytes_total{kind}        included), payload bytes (LIST: none)
//   portalbd_store_http_requests_total    s3:// only: HTTP requests sent, retries
//   portalbd_store_http_retries_total       included; and the retries
//   portalbd_store_failing                1 while segment uploads fail (and are retried)
//   portalbd_write_buffer_bytes / _limit_bytes, portalbd_write_stalls_total
//   portalbd_write_budget_{bytes,used_bytes,high_water_bytes}, _waits_total   the write
//     buffers' budget all volumes share (with the first volume only)
//   portalbd_cache_hits_total, _misses_total, portalbd_cache_bytes, _capacity_bytes
//   portalbd_disk_cache_{hits,misses,damaged,inserts,dropped,evictions}_total,
//     portalbd_disk_cache_bytes, _capacity_bytes, _entries   only while [cache] is on
//   portalbd_read_ahead_{requests,bytes,hits,wasted,failures}_total
//   portalbd_segments, portalbd_segment_bytes, portalbd_map_ssts, portalbd_map_bytes,
//   portalbd_live_bytes, portalbd_garbage_bytes, portalbd_shadowed_bytes,
//   portalbd_gc_reclaimed_bytes_total, portalbd_full_compactions_total
//   portalbd_epoch, portalbd_fenced, portalbd_snapshots, portalbd_size_bytes,
//   portalbd_nbd_connections, portalbd_corrupt_refetches_total
//
// Thread-safe as the sampler is; Collect() runs on the metrics server's threads.
#pragma once

#include <prometheus/collectable.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace portal::metrics {

struct StoreKindSample {
  std::string kind;  // "GET", ...
  uint64_t calls = 0;
  uint64_t errors = 0;
  std::optional<uint64_t> bytes;  // unset: the kind counts no bytes (LIST)
};

// The local disk cache (cache/disk_cache.h DiskCacheStats).
struct DiskCacheSample {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t damaged = 0;
  uint64_t inserts = 0;
  uint64_t dropped = 0;
  uint64_t evictions = 0;
  uint64_t bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t entries = 0;
};

// Read-ahead of sequential reads (volume/volume.h VolumeStats read_ahead_*).
struct ReadAheadSample {
  uint64_t gets = 0;  // GETs that succeeded, and their bytes
  uint64_t bytes = 0;
  uint64_t hits = 0;    // chunks read ahead that a read used
  uint64_t wasted = 0;  // chunks read ahead that left the cache unread
  uint64_t failed = 0;  // read-aheads that failed (dropped)
};

// The write buffers' budget shared by the volumes (volume/write_budget.h).
struct WriteBudgetSample {
  uint64_t limit_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t high_water_bytes = 0;
  uint64_t waits = 0;
};

struct VolumeSample {
  std::string volume;  // the volume label
  uint64_t size_bytes = 0;
  uint64_t epoch = 0;
  bool fenced = false;
  uint64_t snapshots = 0;
  uint64_t nbd_connections = 0;
  std::vector<StoreKindSample> store;
  std::optional<uint64_t> http_requests;  // s3:// only
  std::optional<uint64_t> http_retries;
  bool store_failing = false;
  uint64_t buffer_bytes = 0;
  uint64_t buffer_limit_bytes = 0;
  uint64_t write_stalls = 0;
  std::optional<WriteBudgetSample> write_budget;  // unset: not this volume's to report
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  uint64_t cache_bytes = 0;
  uint64_t cache_capacity_bytes = 0;
  std::optional<DiskCacheSample> disk_cache;  // unset: no disk cache
  ReadAheadSample read_ahead;
  uint64_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t map_ssts = 0;
  uint64_t map_bytes = 0;
  uint64_t live_bytes = 0;
  uint64_t shadowed_bytes = 0;
  uint64_t gc_reclaimed_bytes = 0;
  uint64_t full_compactions = 0;
  uint64_t corrupt_refetches = 0;
};

class VolumeCollector final : public prometheus::Collectable {
 public:
  using Sampler = std::function<std::vector<VolumeSample>()>;
  explicit VolumeCollector(Sampler sampler) : sampler_(std::move(sampler)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

  // The families for `samples` (what Collect() returns for them).
  static std::vector<prometheus::MetricFamily> Families(const std::vector<VolumeSample>& samples);

 private:
  Sampler sampler_;
};

}  // namespace portal::metrics
