#include "metrics/volume_collector.h"

#include <prometheus/metric_family.h>

#include <map>

namespace portal::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Families in first-use order, each holding one series per volume (and kind).
class Builder {
 public:
  void Add(const char* name, MetricType type, const char* help, ClientMetric::Label volume,
           double value, std::vector<ClientMetric::Label> more = {}) {
    auto [it, fresh] = index_.try_emplace(name, families_.size());
    if (fresh) families_.push_back(MetricFamily{name, help, type, {}});
    ClientMetric m;
    m.label.push_back(std::move(volume));
    for (auto& l : more) m.label.push_back(std::move(l));
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    families_[it->second].metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<MetricFamily> families_;
};

double D(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::vector<MetricFamily> VolumeCollector::Collect() const { return Families(sampler_()); }

std::vector<MetricFamily> VolumeCollector::Families(const std::vector<VolumeSample>& samples) {
  constexpr auto kCounter = MetricType::Counter;
  constexpr auto kGauge = MetricType::Gauge;
  Builder b;
  for (const VolumeSample& s : samples) {
    const ClientMetric::Label v{"volume", s.volume};
    b.Add("portalbd_size_bytes", kGauge, "Device size", v, D(s.size_bytes));
    b.Add("portalbd_epoch", kGauge, "Writer epoch of the open volume", v, D(s.epoch));
    b.Add("portalbd_fenced", kGauge, "1 when another writer opened the volume", v,
          s.fenced ? 1 : 0);
    b.Add("portalbd_snapshots", kGauge, "Snapshots", v, D(s.snapshots));
    b.Add("portalbd_nbd_connections", kGauge, "Open NBD connections", v, D(s.nbd_connections));
    for (const StoreKindSample& k : s.store) {
      b.Add("portalbd_store_requests_total", kCounter, "Object store calls, by kind", v, D(k.calls),
            {{"kind", k.kind}});
    }
    for (const StoreKindSample& k : s.store) {
      b.Add("portalbd_store_errors_total", kCounter,
            "Object store calls that failed (NotFound included), by kind", v, D(k.errors),
            {{"kind", k.kind}});
    }
    for (const StoreKindSample& k : s.store) {
      if (!k.bytes) continue;
      b.Add("portalbd_store_bytes_total", kCounter,
            "Payload bytes of successful object store calls, by kind", v, D(*k.bytes),
            {{"kind", k.kind}});
    }
    if (s.http_requests) {
      b.Add("portalbd_store_http_requests_total", kCounter,
            "HTTP requests sent to S3, retries included", v, D(*s.http_requests));
    }
    if (s.http_retries) {
      b.Add("portalbd_store_http_retries_total", kCounter,
            "HTTP requests to S3 sent again after a retryable failure", v, D(*s.http_retries));
    }
    b.Add("portalbd_store_failing", kGauge, "1 while segment uploads fail and are retried", v,
          s.store_failing ? 1 : 0);
    b.Add("portalbd_write_buffer_bytes", kGauge, "Written bytes not yet in a segment", v,
          D(s.buffer_bytes));
    b.Add("portalbd_write_buffer_limit_bytes", kGauge, "Unflushed bytes beyond which writes stall",
          v, D(s.buffer_limit_bytes));
    b.Add("portalbd_write_stalls_total", kCounter, "Writes that waited for buffer space", v,
          D(s.write_stalls));
    if (s.write_budget) {
      const WriteBudgetSample& wb = *s.write_budget;
      b.Add("portalbd_write_budget_bytes", kGauge,
            "Write buffer bytes all volumes together may hold", v, D(wb.limit_bytes));
      b.Add("portalbd_write_budget_used_bytes", kGauge,
            "Write buffer bytes held or reserved by all volumes", v, D(wb.used_bytes));
      b.Add("portalbd_write_budget_high_water_bytes", kGauge,
            "The most write buffer bytes all volumes held or reserved at once", v,
            D(wb.high_water_bytes));
      b.Add("portalbd_write_budget_waits_total", kCounter,
            "Writes that waited for room in the shared write budget", v, D(wb.waits));
    }
    b.Add("portalbd_cache_hits_total", kCounter, "Block cache hits", v, D(s.cache_hits));
    b.Add("portalbd_cache_misses_total", kCounter, "Block cache misses", v, D(s.cache_misses));
    b.Add("portalbd_cache_bytes", kGauge, "Block cache usage", v, D(s.cache_bytes));
    b.Add("portalbd_cache_capacity_bytes", kGauge, "Block cache capacity", v,
          D(s.cache_capacity_bytes));
    if (s.disk_cache) {
      const DiskCacheSample& dc = *s.disk_cache;
      b.Add("portalbd_disk_cache_hits_total", kCounter, "Chunk reads served by the disk cache", v,
            D(dc.hits));
      b.Add("portalbd_disk_cache_misses_total", kCounter,
            "Chunk reads the disk cache could not serve", v, D(dc.misses));
      b.Add("portalbd_disk_cache_damaged_total", kCounter,
            "Disk cache entries that failed verification, dropped", v, D(dc.damaged));
      b.Add("portalbd_disk_cache_inserts_total", kCounter, "Chunks written to the disk cache", v,
            D(dc.inserts));
      b.Add("portalbd_disk_cache_dropped_total", kCounter,
            "Chunks not written to the disk cache: over the pending bound or already there", v,
            D(dc.dropped));
      b.Add("portalbd_disk_cache_evictions_total", kCounter, "Disk cache entries evicted", v,
            D(dc.evictions));
      b.Add("portalbd_disk_cache_bytes", kGauge, "Disk cache usage", v, D(dc.bytes));
      b.Add("portalbd_disk_cache_capacity_bytes", kGauge, "Disk cache capacity", v,
            D(dc.capacity_bytes));
      b.Add("portalbd_disk_cache_entries", kGauge, "Chunks in the disk cache", v, D(dc.entries));
    }
    const ReadAheadSample& ra = s.read_ahead;
    b.Add("portalbd_read_ahead_requests_total", kCounter,
          "Read-ahead GETs of sequential reads that succeeded", v, D(ra.gets));
    b.Add("portalbd_read_ahead_bytes_total", kCounter, "Bytes those read-ahead GETs fetched", v,
          D(ra.bytes));
    b.Add("portalbd_read_ahead_hits_total", kCounter, "Chunks read ahead that a read then used", v,
          D(ra.hits));
    b.Add("portalbd_read_ahead_wasted_total", kCounter,
          "Chunks read ahead that left the cache unread", v, D(ra.wasted));
    b.Add("portalbd_read_ahead_failures_total", kCounter, "Read-aheads that failed, dropped", v,
          D(ra.failed));
    b.Add("portalbd_segments", kGauge, "Data segments in the store", v, D(s.segments));
    b.Add("portalbd_segment_bytes", kGauge, "Stored size of the data segments", v,
          D(s.segment_bytes));
    b.Add("portalbd_map_ssts", kGauge, "Map SSTs in the store", v, D(s.map_ssts));
    b.Add("portalbd_map_bytes", kGauge, "Stored size of the map SSTs", v, D(s.map_bytes));
    b.Add("portalbd_live_bytes", kGauge, "Data blocks the device's map references", v,
          D(s.live_bytes));
    b.Add("portalbd_garbage_bytes", kGauge,
          "Segment bytes beyond the live data (estimate: live data counts uncompressed)", v,
          D(s.segment_bytes > s.live_bytes ? s.segment_bytes - s.live_bytes : 0));
    b.Add("portalbd_shadowed_bytes", kGauge,
          "Estimated data referenced only by overwritten map entries", v, D(s.shadowed_bytes));
    b.Add("portalbd_gc_reclaimed_bytes_total", kCounter,
          "Stored bytes of the dead segments GC deleted", v, D(s.gc_reclaimed_bytes));
    b.Add("portalbd_full_compactions_total", kCounter, "Full map compactions run", v,
          D(s.full_compactions));
    b.Add("portalbd_corrupt_refetches_total", kCounter,
          "Object reads fetched again after failing verification", v, D(s.corrupt_refetches));
  }
  return b.Take();
}

}  // namespace portal::metrics
