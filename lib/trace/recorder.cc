#include "trace/recorder.h"

#include <fmt/format.h>

namespace portal::trace {

Recorder::Recorder(Options options, uint64_t start_ns)
    : options_(std::move(options)), start_ns_(start_ns) {}

Recorder::~Recorder() = default;

Result<std::unique_ptr<Recorder>> Recorder::Create(Options options, uint64_t start_ns,
                                                   int64_t start_unix_ns) {
  std::unique_ptr<Recorder> r(new Recorder(std::move(options), start_ns));
  TraceWriter::Options wo;
  wo.workload = r->options_.workload;
  wo.start_time = Rfc3339(start_unix_ns);
  wo.compat = r->options_.compat;
  RETURN_IF_ERROR(r->writer_.Open(r->options_.path, std::move(wo)));
  return r;
}

bool Recorder::SetDeviceSize(uint64_t size_bytes) {
  std::lock_guard lock(mu_);
  if (!device_size_) device_size_ = size_bytes;
  return *device_size_ == size_bytes;
}

Status Recorder::Record(uint32_t conn, const TappedRequest& r) {
  if (!r.type) return Status::Ok();
  TraceOp op;
  op.type = *r.type;
  op.conn = conn;
  op.flags = OpFlagsFromNbd(r.nbd_flags);
  op.success = r.success;
  if (HasRange(op.type)) {
    op.offset = r.offset;
    op.length = r.length;
  }
  uint64_t start = r.start_ns > start_ns_ ? r.start_ns - start_ns_ : 0;
  uint64_t end = r.end_ns > start_ns_ ? r.end_ns - start_ns_ : 0;
  if (end < start) end = start;
  op.start_ns = start;
  op.timestamp_ns = end;
  op.duration_ns = end - start;
  std::lock_guard lock(mu_);
  if (finished_) return Status::Shutdown("trace already finished");
  auto written = writer_.Append(op);
  if (!written.ok()) return written.status();
  if (*written) ++counts_[static_cast<size_t>(op.type)];
  return Status::Ok();
}

Status Recorder::Finish(uint64_t now_ns) {
  std::lock_guard lock(mu_);
  if (finished_) return Status::Ok();
  finished_ = true;
  return writer_.Finish(device_size_.value_or(0), now_ns > start_ns_ ? now_ns - start_ns_ : 0);
}

uint64_t Recorder::ops_written() const {
  std::lock_guard lock(mu_);
  return writer_.ops_written();
}

uint64_t Recorder::ops_dropped() const {
  std::lock_guard lock(mu_);
  return writer_.ops_dropped();
}

std::array<uint64_t, kNumOpTypes> Recorder::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::string Recorder::CountsByType() const {
  std::string out;
  auto c = counts();
  for (size_t t = 0; t < c.size(); ++t) {
    if (c[t] == 0) continue;
    out += fmt::format(" {}={}", OpTypeName(static_cast<OpType>(t)), c[t]);
  }
  return out;
}

}  // namespace portal::trace
