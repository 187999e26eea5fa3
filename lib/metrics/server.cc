#include "metrics/server.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <exception>

namespace portal::metrics {

// Two threads: scrapes are rare (every 15 s or so) and cheap; a second thread keeps one
// slow scraper from delaying another.
constexpr size_t kServerThreads = 2;

MetricsServer::MetricsServer() : registry_(std::make_shared<prometheus::Registry>()) {
  collectables_.push_back(registry_);
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Add(std::shared_ptr<prometheus::Collectable> collectable) {
  if (exposer_) exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

Status MetricsServer::Start(const std::string& address) {
  // civetweb reports a port it cannot bind by throwing (CivetException); this is the one
  // place that becomes a Status.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, kServerThreads);
  } catch (const std::exception& e) {
    return Status::IOError("cannot serve metrics on " + address + ": " + e.what());
  }
  for (const auto& c : collectables_) exposer_->RegisterCollectable(c);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  const size_t colon = address.rfind(':');
  bound_ = address.substr(0, colon + 1) + (ports.empty() ? "?" : std::to_string(ports[0]));
  return Status::Ok();
}

void MetricsServer::Stop() { exposer_.reset(); }

}  // namespace portal::metrics
