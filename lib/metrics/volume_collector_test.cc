// VolumeCollector: one series per volume (and store kind), counters as counters, gauges as
// gauges, in Prometheus text format.
#include "metrics/volume_collector.h"

#include <prometheus/text_serializer.h>

#include <catch2/catch.hpp>

namespace portal::metrics {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST_CASE("VolumeCollector renders a sample per volume, read at collection", "[metrics]") {
  int calls = 0;
  VolumeCollector c([&] {
    ++calls;
    VolumeSample a;
    a.volume = "a";
    a.epoch = 3;
    a.fenced = true;
    a.store = {{"PUT_IF_ABSENT", 2, 1, 8192}, {"LIST", 4, 0, std::nullopt}};
    a.segment_bytes = 10000;
    a.live_bytes = 4096;
    a.gc_reclaimed_bytes = 777;
    VolumeSample b;
    b.volume = "b";
    b.http_requests = 9;
    b.http_retries = 2;
    b.live_bytes = 5;  // more live than stored (compression): no negative garbage
    return std::vector<VolumeSample>{a, b};
  });
  const std::string text = prometheus::TextSerializer().Serialize(c.Collect());
  CHECK(calls == 1);
  CHECK(Has(text, "# TYPE portalbd_epoch gauge"));
  CHECK(Has(text, R"(portalbd_epoch{volume="a"} 3)"));
  CHECK(Has(text, R"(portalbd_epoch{volume="b"} 0)"));
  CHECK(Has(text, R"(portalbd_fenced{volume="a"} 1)"));
  CHECK(Has(text, "# TYPE portalbd_store_requests_total counter"));
  CHECK(Has(text, R"(portalbd_store_requests_total{volume="a",kind="PUT_IF_ABSENT"} 2)"));
  CHECK(Has(text, R"(portalbd_store_errors_total{volume="a",kind="PUT_IF_ABSENT"} 1)"));
  CHECK(Has(text, R"(portalbd_store_bytes_total{volume="a",kind="PUT_IF_ABSENT"} 8192)"));
  CHECK(Has(text, R"(portalbd_store_requests_total{volume="a",kind="LIST"} 4)"));
  CHECK(text.find(R"(portalbd_store_bytes_total{volume="a",kind="LIST"})") == std::string::npos);
  CHECK(Has(text, R"(portalbd_store_http_requests_total{volume="b"} 9)"));
  CHECK(Has(text, R"(portalbd_store_http_retries_total{volume="b"} 2)"));
  CHECK(text.find(R"(portalbd_store_http_requests_total{volume="a"})") == std::string::npos);
  CHECK(Has(text, R"(portalbd_garbage_bytes{volume="a"} 5904)"));
  CHECK(Has(text, R"(portalbd_garbage_bytes{volume="b"} 0)"));
  CHECK(Has(text, "# TYPE portalbd_gc_reclaimed_bytes_total counter"));
  CHECK(Has(text, R"(portalbd_gc_reclaimed_bytes_total{volume="a"} 777)"));
  // One family per name, however many volumes.
  size_t helps = 0;
  for (size_t p = 0; (p = text.find("# HELP portalbd_epoch ", p)) != std::string::npos; ++p) {
    ++helps;
  }
  CHECK(helps == 1);
}

TEST_CASE("VolumeCollector renders the disk cache while it is on, and read-ahead", "[metrics]") {
  VolumeSample a;
  a.volume = "a";
  a.disk_cache = DiskCacheSample{.hits = 7,
                                 .misses = 3,
                                 .damaged = 1,
                                 .inserts = 5,
                                 .dropped = 2,
                                 .evictions = 4,
                                 .bytes = 65536,
                                 .capacity_bytes = 1 << 20,
                                 .entries = 1};
  a.read_ahead = {.gets = 2, .bytes = 131072, .hits = 9, .wasted = 6, .failed = 8};
  VolumeSample b;  // no disk cache
  b.volume = "b";
  const std::string text =
      prometheus::TextSerializer().Serialize(VolumeCollector::Families({a, b}));
  CHECK(Has(text, "# TYPE portalbd_disk_cache_hits_total counter"));
  CHECK(Has(text, R"(portalbd_disk_cache_hits_total{volume="a"} 7)"));
  CHECK(Has(text, R"(portalbd_disk_cache_misses_total{volume="a"} 3)"));
  CHECK(Has(text, R"(portalbd_disk_cache_damaged_total{volume="a"} 1)"));
  CHECK(Has(text, R"(portalbd_disk_cache_inserts_total{volume="a"} 5)"));
  CHECK(Has(text, R"(portalbd_disk_cache_dropped_total{volume="a"} 2)"));
  CHECK(Has(text, R"(portalbd_disk_cache_evictions_total{volume="a"} 4)"));
  CHECK(Has(text, "# TYPE portalbd_disk_cache_bytes gauge"));
  CHECK(Has(text, R"(portalbd_disk_cache_bytes{volume="a"} 65536)"));
  CHECK(Has(text, R"(portalbd_disk_cache_capacity_bytes{volume="a"} 1048576)"));
  CHECK(Has(text, R"(portalbd_disk_cache_entries{volume="a"} 1)"));
  CHECK(text.find(R"(portalbd_disk_cache_hits_total{volume="b"})") == std::string::npos);
  CHECK(Has(text, "# TYPE portalbd_read_ahead_requests_total counter"));
  CHECK(Has(text, R"(portalbd_read_ahead_requests_total{volume="a"} 2)"));
  CHECK(Has(text, R"(portalbd_read_ahead_bytes_total{volume="a"} 131072)"));
  CHECK(Has(text, R"(portalbd_read_ahead_hits_total{volume="a"} 9)"));
  CHECK(Has(text, R"(portalbd_read_ahead_wasted_total{volume="a"} 6)"));
  CHECK(Has(text, R"(portalbd_read_ahead_failures_total{volume="a"} 8)"));
  CHECK(Has(text, R"(portalbd_read_ahead_requests_total{volume="b"} 0)"));
}

}  // namespace
}  // namespace portal::metrics
