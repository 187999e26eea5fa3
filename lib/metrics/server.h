// MetricsServer: Prometheus text format over HTTP at /metrics ([metrics] address).
//
// prometheus-cpp's pull library (Debian's prometheus-cpp-dev) serves it with civetweb on
// its own threads, so a scrape never runs on the NBD or control event loops; collecting
// reads counters (atomics, and the volume's stats under its mutex, as `portalctl status`
// does). The registry holds the NBD request metrics (NbdMetrics); Add() registers more
// collectables (VolumeCollector).
//
// Not thread-safe itself: Start(), Add() and Stop() from one thread. Collectables must
// stay valid until Stop() returns (it joins the server threads).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "util/status.h"

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace portal::metrics {

class MetricsServer {
 public:
  MetricsServer();
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Where NBD metrics and other registry-based metrics go.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  // Also exposed at /metrics from now on.
  void Add(std::shared_ptr<prometheus::Collectable> collectable);

  // Binds "HOST:PORT" ("127.0.0.1:9109", "[::1]:9109"; port 0 picks one) and serves.
  // IOError when the address cannot be bound.
  Status Start(const std::string& address);
  // The bound address, with the real port ("" before Start()).
  std::string bound_address() const { return bound_; }
  // Stops serving; joins the server threads. Idempotent.
  void Stop();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string bound_;
};

}  // namespace portal::metrics
