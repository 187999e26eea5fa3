#include "portalctl/progress.h"

#include <fmt/format.h>

#include <cstdio>

#include "control/client.h"
#include "control/protocol.h"

namespace {

constexpr auto kQuietFor = std::chrono::seconds(1);
// A status reply slower than this is skipped (the daemon is busy or stopped): the line
// then says only how long we have waited.
constexpr int kStatusTimeoutMs = 500;

std::string Mebibytes(uint64_t bytes) {
  return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1 << 20));
}

}  // namespace

Progress::Progress(std::string label, Connect connect)
    : label_(std::move(label)),
      connect_(std::move(connect)),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { Done(); }

std::string Progress::StatusNote() {
  using namespace portal::control;
  if (!status_client_) {
    auto c = connect_();
    if (!c.ok()) return "";
    status_client_ = std::move(*c);
    status_client_->set_timeout_ms(kStatusTimeoutMs);
  }
  Request request;
  request.op = Op::kStatus;
  auto reply = status_client_->Call(request);
  const auto* s = reply.ok() ? std::get_if<StatusReply>(&*reply) : nullptr;
  if (s == nullptr) {
    status_client_.reset();  // a late reply would answer the next request: start afresh
    return "";
  }
  std::string note = fmt::format("; {} not yet in the store", Mebibytes(s->status.buffer_bytes));
  if (!s->status.store_failing_since.empty()) {
    note += fmt::format("; store FAILING since {}: {}", s->status.store_failing_since,
                        s->status.store_error);
  }
  return note;
}

void Progress::Tick() {
  const auto waited = std::chrono::steady_clock::now() - start_;
  if (waited < kQuietFor) return;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(waited).count();
  // "\r" back to the line's start, "\033[K" erases what a longer earlier line left.
  std::fprintf(stderr, "\r\033[K%s: waiting %lld s%s", label_.c_str(),
               static_cast<long long>(seconds), StatusNote().c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::Done() {
  if (!drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}
