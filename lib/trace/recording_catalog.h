// RecordingCatalog: server-side trace recording (portalbd's [record] path). It wraps the
// daemon's export catalog; each connection that opens the recorded export gets its own
// RequestObserver (nbd/request_observer.h) that hands every answered request to a
// Recorder: connection number (from 1, in the order connections open the export), arrival
// time (header read) and completion time (reply queued) from env.NowNanos(), type,
// offset, length, flags (FUA, NO_HOLE, ...) and success (false for any NBD error reply,
// including invalid requests and NBD_ESHUTDOWN). The file is the one trace-record writes
// (trace_format.h), streamed: memory does not grow with the trace.
//
// Only the export named `export_name` is recorded, and only when writable; snapshot
// exports ("portalbd@NAME") are served unrecorded (their size is not the trace's).
// Opening the recorded export also sets the recorder's device size to the export size.
//
// A failure to append to the trace (disk full) never fails a request: it is counted and
// logged once. Thread-safe: List/Lookup/Open as the inner catalog; observers share the
// Recorder, which serializes writers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "nbd/export.h"
#include "trace/recorder.h"

namespace portal {
class Env;
}

namespace portal::trace {

class RecordingCatalog final : public nbd::ExportCatalog {
 public:
  // `env` must outlive the catalog and every connection opened through it.
  RecordingCatalog(std::unique_ptr<nbd::ExportCatalog> inner, std::shared_ptr<Recorder> recorder,
                   Env& env, std::string export_name);
  ~RecordingCatalog() override;

  std::vector<nbd::ExportInfo> List() override { return inner_->List(); }
  Result<nbd::ExportInfo> Lookup(std::string_view name) override { return inner_->Lookup(name); }
  Result<std::shared_ptr<nbd::OpenExport>> Open(std::string_view name) override;

  // Connections that opened the recorded export so far.
  uint64_t connections() const { return next_conn_.load() - 1; }
  // Requests that could not be appended to the trace.
  uint64_t record_errors() const { return shared_->errors.load(); }

 private:
  class Observer;
  struct Shared {
    std::shared_ptr<Recorder> recorder;
    Env& env;
    std::atomic<uint64_t> errors{0};
  };

  std::unique_ptr<nbd::ExportCatalog> inner_;
  const std::string export_name_;
  std::shared_ptr<Shared> shared_;  // outlives the catalog while connections hold it
  std::atomic<uint32_t> next_conn_{1};
};

}  // namespace portal::trace
