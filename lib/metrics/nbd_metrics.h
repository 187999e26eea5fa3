// NbdMetrics: per-request NBD metrics, by volume, export and op:
//
//   portalbd_nbd_requests_total{volume,export,op}            requests answered
//   portalbd_nbd_errors_total{volume,export,op}              ... with an NBD error reply
//   portalbd_nbd_bytes_total{volume,export,op}               payload of successful READs
//                                                            and WRITEs (other ops: 0)
//   portalbd_nbd_request_duration_seconds{volume,export,op}  histogram, header read to
//                                                            reply queued (FLUSH: the
//                                                            time to make writes durable)
//
// op is read, write, flush, trim, write_zeroes, block_status, cache or other. It works
// through the session's RequestObserver hook (nbd/request_observer.h): Wrap() decorates an
// export catalog so that every opened export gets an observer, chained in front of one the
// inner catalog set (the [record] trace). The metric objects of an export are looked up
// once per connection; a request then costs two atomic adds and one histogram observation
// (prometheus-cpp takes a short uncontended mutex there).
//
// Thread-safe. The registry (registry()) is what a MetricsServer exposes; NbdMetrics and
// every catalog it wrapped must outlive the connections opened through them (observers
// hold a shared reference to the families, so a late connection only counts into them).
#pragma once

#include <memory>
#include <string>

#include "nbd/export.h"

namespace prometheus {
class Registry;
}

namespace portal {
class Env;
}

namespace portal::metrics {

class NbdMetrics {
 public:
  // `volume`: the value of the volume label. `env` (the clock) must outlive every
  // connection opened through a wrapped catalog.
  NbdMetrics(std::shared_ptr<prometheus::Registry> registry, std::string volume, Env& env);
  ~NbdMetrics();
  NbdMetrics(const NbdMetrics&) = delete;
  NbdMetrics& operator=(const NbdMetrics&) = delete;

  // A catalog that serves `inner`'s exports with metrics attached.
  std::unique_ptr<nbd::ExportCatalog> Wrap(std::unique_ptr<nbd::ExportCatalog> inner);

  // An observer counting into `export_name`'s series; `next` (may be null) sees every
  // call after it. For Wrap() and tests.
  std::shared_ptr<nbd::RequestObserver> ObserverFor(const std::string& export_name,
                                                    std::shared_ptr<nbd::RequestObserver> next);

  // "read", "write", ... for an NBD command type ("other" for unknown ones).
  static const char* OpLabel(uint16_t nbd_type);

 private:
  struct Families;
  class Observer;
  class Catalog;
  std::shared_ptr<Families> families_;
  Env& env_;
};

}  // namespace portal::metrics
