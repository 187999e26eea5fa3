#include "trace/recording_catalog.h"

#include "env/env.h"
#include "nbd/transmission.h"
#include "util/log.h"

namespace portal::trace {

class RecordingCatalog::Observer final : public nbd::RequestObserver {
 public:
  Observer(std::shared_ptr<Shared> shared, uint32_t conn)
      : shared_(std::move(shared)), conn_(conn) {}

  uint64_t OnRequest(const nbd::RequestHeader&) override { return shared_->env.NowNanos(); }

  void OnReply(const nbd::RequestHeader& h, uint64_t start_ns, uint32_t nbd_error) override {
    TappedRequest r;
    r.nbd_type = h.type;
    r.nbd_flags = h.flags;
    r.cookie = h.cookie;
    r.offset = h.offset;
    r.length = h.length;
    r.start_ns = start_ns;
    r.end_ns = shared_->env.NowNanos();
    r.success = nbd_error == 0;
    r.type = TraceTypeFromNbd(h.type);
    Status st = shared_->recorder->Record(conn_, r);
    // After Finish (a connection outliving the server's shutdown wait) Record refuses;
    // that is not a write error.
    if (st.ok() || st.code() == Status::Code::kShutdown) return;
    if (shared_->errors.fetch_add(1) == 0) {
      log::Get("portalbd::trace")
          ->error("cannot append to the trace path={} error=\"{}\" (further errors counted)",
                  shared_->recorder->path(), st.ToString());
    }
  }

 private:
  const std::shared_ptr<Shared> shared_;
  const uint32_t conn_;
};

RecordingCatalog::RecordingCatalog(std::unique_ptr<nbd::ExportCatalog> inner,
                                   std::shared_ptr<Recorder> recorder, Env& env,
                                   std::string export_name)
    : inner_(std::move(inner)),
      export_name_(std::move(export_name)),
      shared_(std::make_shared<Shared>(std::move(recorder), env)) {}

RecordingCatalog::~RecordingCatalog() = default;

Result<std::shared_ptr<nbd::OpenExport>> RecordingCatalog::Open(std::string_view name) {
  ASSIGN_OR_RETURN(std::shared_ptr<nbd::OpenExport> opened, inner_->Open(name));
  if (opened->info.name != export_name_ || opened->info.read_only) return opened;
  if (!shared_->recorder->SetDeviceSize(opened->info.size_bytes)) {
    log::Get("portalbd::trace")
        ->warn("export size changed while recording; the trace keeps the first size_bytes={}",
               opened->info.size_bytes);
  }
  opened->observer = std::make_shared<Observer>(shared_, next_conn_.fetch_add(1));
  return opened;
}

}  // namespace portal::trace
