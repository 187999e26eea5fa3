#include "nbd/session.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "util/coding.h"
#include "util/log.h"

namespace portal::nbd {
namespace {

constexpr uint32_t kMaxStatusExtents = 64 * 1024;  // well under the spec's 2^20
constexpr uint64_t kMinHoleBytes = 4096;           // smaller zero runs are sent as data
constexpr size_t kArenaBytes = 16 * 1024;

// Request phases, for telling an inline completion from a detached one.
constexpr int kStarting = 0;
constexpr int kRunning = 1;
constexpr int kDoneInline = 2;

// A READ's reply buffer that gives its budget bytes back when the reply has been
// written (or dropped), whichever thread lets go of it last.
struct LeasedBuffer : Buffer {
  LeasedBuffer(size_t size, InflightBudget::Lease l) : Buffer(size), lease(std::move(l)) {}
  InflightBudget::Lease lease;
};

}  // namespace

struct Session::Request {
  RequestHeader h;
  std::shared_ptr<Buffer> buf;  // WRITE payload, or READ reply: `room` header bytes + data
  size_t filled = 0;            // WRITE payload bytes received so far
  std::shared_ptr<const void> keep;  // `buf` as the WRITE's WriteFlags::keep
  size_t room = 0;
  uint64_t accounted_bytes = 0;
  InflightBudget::Lease lease;  // payload bytes taken from the server-wide budget
  std::vector<device::ByteRange> zeroes;
  std::vector<device::StatusExtent> extents;
  Status status;
  uint64_t observer_token = 0;
  std::atomic<int> phase{kStarting};

  static Task<void> Execute(device::BlockDevice& dev, Request& r, bool want_zeroes);
};

Task<void> Session::Request::Execute(device::BlockDevice& dev, Request& r, bool want_zeroes) {
  const RequestHeader& h = r.h;
  const bool fua = h.flags & NBD_CMD_FLAG_FUA;
  switch (h.type) {
    case NBD_CMD_READ:
      r.status = co_await dev.Read(h.offset, std::span(r.buf->data() + r.room, h.length),
                                   want_zeroes ? &r.zeroes : nullptr);
      break;
    case NBD_CMD_WRITE:
      // The payload is not touched after this: the device may keep it (no copy).
      r.keep = r.buf;
      r.status = co_await dev.Write(h.offset, r.buf->span(), {.fua = fua, .keep = &r.keep});
      break;
    case NBD_CMD_FLUSH:
      r.status = co_await dev.Flush();
      break;
    case NBD_CMD_TRIM:
      r.status = co_await dev.Trim(h.offset, h.length, {.fua = fua});
      break;
    case NBD_CMD_WRITE_ZEROES:
      r.status = co_await dev.WriteZeroes(
          h.offset, h.length,
          {.fua = fua,
           .no_hole = (h.flags & NBD_CMD_FLAG_NO_HOLE) != 0,
           .fast_only = (h.flags & NBD_CMD_FLAG_FAST_ZERO) != 0});
      break;
    case NBD_CMD_BLOCK_STATUS: {
      const bool one = h.flags & NBD_CMD_FLAG_REQ_ONE;
      auto res = co_await dev.BlockStatus(h.offset, h.length, one ? 1 : kMaxStatusExtents);
      if (!res.ok()) {
        r.status = res.status();
        break;
      }
      // Clip to the request (covers REQ_ONE's rule) and drop empty extents.
      uint64_t left = h.length;
      for (auto& e : *res) {
        if (left == 0 || e.length == 0) continue;
        e.length = std::min<uint64_t>(e.length, left);
        left -= e.length;
        r.extents.push_back(e);
      }
      if (r.extents.empty()) r.status = Status::IOError("device returned no extents");
      break;
    }
    case NBD_CMD_CACHE:
      r.status = co_await dev.Cache(h.offset, h.length);
      break;
    default:
      r.status = Status::InvalidArgument("unknown command");
  }
}

Session::Session(ExportCatalog& catalog, Host& host, Options options, std::string peer)
    : catalog_(catalog),
      host_(host),
      options_(options),
      peer_(std::move(peer)),
      handshake_(catalog, options.tls),
      in_(options.input_buffer_bytes) {}

Session::~Session() { PORTAL_ASSERT(inflight_ == 0, "session destroyed with requests in flight"); }

void Session::Start() {
  std::string greeting;
  handshake_.Begin(&greeting);
  AppendSmall(greeting);
}

void Session::StartTransmission(std::shared_ptr<OpenExport> exp) {
  PORTAL_ASSERT(phase_ == Phase::kHandshake, "StartTransmission on a started session");
  kernel_ = true;
  n_ = Negotiated{};
  n_.export_ = std::move(exp);
  n_.transmission_flags = Handshake::TransmissionFlags(n_.export_->info, false);
  export_ = n_.export_;
  phase_ = Phase::kTransmission;
  log::Get("portalbd::nbd")
      ->debug("kernel client attached peer={} export={}", peer_, export_->info.name);
}

void Session::SetSize(uint64_t size_bytes) {
  if (export_) export_->info.size_bytes = size_bytes;
}

bool Session::Paused() const {
  if (budget_wait_) return true;
  if (inflight_ >= options_.max_inflight_requests) return true;
  return (inflight_ > 0 || out_bytes_ > 0) &&
         inflight_bytes_ + out_bytes_ >= options_.max_inflight_bytes;
}

std::span<uint8_t> Session::InputSpace() {
  if (phase_ != Phase::kHandshake && phase_ != Phase::kTransmission) return {};
  if (pending_write_) {
    Request& r = *pending_write_;
    return {r.buf->data() + r.filled, r.buf->size() - r.filled};
  }
  if (Paused() && drain_left_ == 0) return {};
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
  } else if (in_end_ == in_.size() && in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  size_t room = in_.size() - in_end_;
  const size_t buffered = in_end_ - in_begin_;
  if (header_alone_ && phase_ == Phase::kTransmission && drain_left_ == 0 &&
      buffered < kRequestHeaderSize) {
    room = std::min(room, kRequestHeaderSize - buffered);
  }
  return {in_.data() + in_end_, room};
}

void Session::CommitInput(size_t n) {
  if (pending_write_) {
    pending_write_->filled += n;
    PORTAL_ASSERT(pending_write_->filled <= pending_write_->buf->size(), "payload overrun");
    if (pending_write_->filled == pending_write_->buf->size()) {
      Dispatch(std::move(pending_write_));
    }
  } else {
    in_end_ += n;
    PORTAL_ASSERT(in_end_ <= in_.size(), "input overrun");
  }
  ProcessInput();
}

void Session::OnInputEof() {
  if (phase_ == Phase::kHandshake || phase_ == Phase::kStartTls) {
    phase_ = Phase::kClosed;
  } else if (phase_ == Phase::kTransmission) {
    StopReading(Phase::kDraining);
  }
}

void Session::ProcessInput() {
  if (phase_ == Phase::kHandshake) ProcessHandshake();
  if (phase_ == Phase::kTransmission) ProcessTransmission();
}

void Session::ProcessHandshake() {
  std::string out;
  size_t used = handshake_.Consume({in_.data() + in_begin_, in_end_ - in_begin_}, &out);
  in_begin_ += used;
  AppendSmall(out);
  switch (handshake_.state()) {
    case Handshake::State::kNegotiating:
      return;
    case Handshake::State::kTransmission:
      n_ = handshake_.negotiated();
      export_ = n_.export_;
      phase_ = Phase::kTransmission;
      log::Get("portalbd::nbd")
          ->debug("client attached peer={} export={} structured={} base_allocation={}", peer_,
                  export_->info.name, n_.structured_replies, n_.base_allocation);
      return;
    case Handshake::State::kAborted:
      StopReading(Phase::kDraining);
      return;
    case Handshake::State::kStartTls:
      if (in_begin_ != in_end_) {
        // Bytes the client sent behind STARTTLS, before our ACK: plaintext someone
        // injected (a client waits for the ACK). Acting on them under TLS would let a
        // man in the middle choose options; hang up without a word instead.
        log::Get("portalbd::nbd")
            ->warn(
                "closing connection: data sent after STARTTLS before the TLS handshake "
                "peer={}",
                peer_);
        out_.clear();
        out_bytes_ = 0;
        out_front_pos_ = 0;
        phase_ = Phase::kClosed;
        return;
      }
      phase_ = Phase::kStartTls;
      return;
    case Handshake::State::kHardClose:
      log::Get("portalbd::nbd")
          ->warn("closing connection during handshake peer={} reason=\"{}\"", peer_,
                 handshake_.error());
      out_.clear();
      out_bytes_ = 0;
      out_front_pos_ = 0;
      phase_ = Phase::kClosed;
      return;
  }
}

void Session::ProcessTransmission() {
  while (phase_ == Phase::kTransmission && !pending_write_) {
    size_t avail = in_end_ - in_begin_;
    if (drain_left_ > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, drain_left_));
      in_begin_ += n;
      drain_left_ -= n;
      if (drain_left_ > 0) return;
      ReplyDrained("invalid write request");
      continue;
    }
    // Shutting down, requests are only answered (small replies, at most one per buffered
    // header), so the in-flight bounds do not apply.
    if ((Paused() && !shutting_down_) || avail < kRequestHeaderSize) return;
    RequestHeader h;
    if (!DecodeRequestHeader(in_.data() + in_begin_, &h)) {
      log::Get("portalbd::nbd")
          ->warn("bad request magic, closing connection peer={}", peer_);
      StopReading(Phase::kDraining);
      return;
    }
    InflightBudget::Lease lease;
    if (!TakeBudget(h, &lease)) return;  // the header stays buffered until the wake-up
    in_begin_ += kRequestHeaderSize;
    avail -= kRequestHeaderSize;
    ++headers_read_;
    if (h.type == NBD_CMD_DISC) {
      StopReading(Phase::kDraining);
      return;
    }
    header_alone_ = h.type == NBD_CMD_WRITE && h.length >= kDirectPayloadBytes;
    auto req = std::make_unique<Request>();
    req->h = h;
    req->lease = std::move(lease);
    if (export_->observer) req->observer_token = export_->observer->OnRequest(h);
    if (h.type == NBD_CMD_WRITE) {
      uint32_t err = shutting_down_ ? NBD_ESHUTDOWN : ValidateRequest(h, n_);
      if (err != 0) {
        // Keep the stream in frame: skip the payload as it arrives, then answer.
        if (h.length == 0) {
          ReplyError(*req, err, "invalid write request");
        } else {
          drain_left_ = h.length;
          drain_header_ = h;
          drain_token_ = req->observer_token;
          drain_error_ = err;
        }
        continue;
      }
      req->buf = TakeBuffer(options_.recycler, h.length);
      size_t n = std::min<size_t>(avail, h.length);
      if (n > 0) std::memcpy(req->buf->data(), in_.data() + in_begin_, n);
      in_begin_ += n;
      req->filled = n;
      if (req->filled < h.length) {
        pending_write_ = std::move(req);  // the rest is read straight into req->buf
        return;
      }
    }
    Dispatch(std::move(req));
  }
}

bool Session::TakeBudget(const RequestHeader& h, InflightBudget::Lease* lease) {
  if (options_.budget == nullptr || shutting_down_ || h.length == 0) return true;
  if (h.type != NBD_CMD_READ && h.type != NBD_CMD_WRITE) return true;
  if (ValidateRequest(h, n_) != 0) return true;  // answered with an error, never buffered
  // The wake-up must not keep a closed connection alive, nor touch a destroyed one.
  std::shared_ptr<void> keep = host_.KeepAlive();
  std::weak_ptr<void> weak = keep;
  const bool owned = keep != nullptr;
  bool taken = false;
  *lease = options_.budget->TryTake(
      h.length,
      [this, weak, owned] {
        std::shared_ptr<void> alive = weak.lock();
        if (owned && !alive) return;
        host_.RunInContext([this] {
          budget_wait_ = false;
          ProcessInput();
        });
      },
      &taken);
  budget_wait_ = !taken;
  return taken;
}

void Session::Dispatch(std::unique_ptr<Request> req) {
  const RequestHeader& h = req->h;
  if (shutting_down_) {
    ReplyError(*req, NBD_ESHUTDOWN, "server is shutting down");
    return;
  }
  if (h.type != NBD_CMD_WRITE) {  // WRITEs were validated before their payload
    if (uint32_t err = ValidateRequest(h, n_); err != 0) {
      ReplyError(*req, err, "invalid request");
      return;
    }
  }
  if (h.type == NBD_CMD_READ) {
    req->room = n_.structured_replies ? kStructuredReplyHeaderSize + 8 : kSimpleReplyHeaderSize;
    // The reply buffer carries the budget lease: given back once the reply is written.
    req->buf = std::make_shared<LeasedBuffer>(req->room + h.length, std::move(req->lease));
  }
  req->accounted_bytes = (h.type == NBD_CMD_READ || h.type == NBD_CMD_WRITE) ? h.length : 0;
  ++inflight_;
  inflight_bytes_ += req->accounted_bytes;

  const bool want_zeroes =
      h.type == NBD_CMD_READ && n_.structured_replies && !(h.flags & NBD_CMD_FLAG_DF);
  Request* raw = req.release();
  ::portal::Start(Request::Execute(*export_->device, *raw, want_zeroes),
        [this, raw, keep = host_.KeepAlive()] {
          if (raw->phase.exchange(kDoneInline) == kStarting) return;  // Dispatch finishes it
          host_.RunInContext([this, raw] { Complete(std::unique_ptr<Request>(raw)); });
        });
  if (raw->phase.exchange(kRunning) == kDoneInline) Complete(std::unique_ptr<Request>(raw));
}

void Session::Complete(std::unique_ptr<Request> req) {
  --inflight_;
  inflight_bytes_ -= req->accounted_bytes;
  EncodeReply(*req);
  req.reset();
  ProcessInput();  // a bound may have paused parsing of buffered requests
}

void Session::ReplyError(const Request& req, uint32_t error, std::string_view message) {
  ReplyError(req.h, req.observer_token, error, message);
}

void Session::ReplyDrained(std::string_view message) {
  ReplyError(drain_header_, drain_token_, drain_error_, message);
}

void Session::ReplyError(const RequestHeader& h, uint64_t observer_token, uint32_t error,
                         std::string_view message) {
  Observe(h, observer_token, error);
  std::string out;
  if (n_.structured_replies) {
    AppendErrorChunk(&out, h.cookie, error, message);
  } else {
    AppendSimpleReply(&out, error, h.cookie);
  }
  AppendSmall(out);
}

void Session::EncodeReply(Request& req) {
  if (!req.status.ok()) {
    uint32_t err = NbdErrorFromStatus(req.status);
    if (err == NBD_EIO) {
      log::Get("portalbd::nbd")
          ->warn("{} failed peer={} offset={} length={} error=\"{}\"", CommandName(req.h.type),
                 peer_, req.h.offset, req.h.length, req.status.ToString());
    }
    ReplyError(req, err, req.status.ToString());
    return;
  }
  Observe(req.h, req.observer_token, 0);
  switch (req.h.type) {
    case NBD_CMD_READ:
      EncodeRead(req);
      return;
    case NBD_CMD_BLOCK_STATUS: {
      std::string out;
      AppendBlockStatusChunk(&out, req.h.cookie, n_.base_allocation_id, req.extents);
      AppendSmall(out);
      return;
    }
    default: {
      std::string out;
      AppendSimpleReply(&out, 0, req.h.cookie);
      AppendSmall(out);
    }
  }
}

void Session::EncodeRead(Request& req) {
  const RequestHeader& h = req.h;
  uint8_t* data = req.buf->data() + req.room;
  if (!n_.structured_replies) {
    EncodeSimpleReplyHeader(req.buf->data(), 0, h.cookie);
    AppendOwned(req.buf, req.buf->data(), req.room + h.length);
    return;
  }
  // Holes worth sending, in order; smaller zero runs travel as data.
  std::vector<device::ByteRange> holes;
  for (const auto& z : req.zeroes) {
    if (z.length >= kMinHoleBytes && z.offset + z.length <= h.length) holes.push_back(z);
  }
  if (h.length == 0) {
    std::string out(kStructuredReplyHeaderSize, '\0');
    EncodeStructuredHeader(reinterpret_cast<uint8_t*>(out.data()), NBD_REPLY_FLAG_DONE,
                           NBD_REPLY_TYPE_NONE, h.cookie, 0);
    AppendSmall(out);
    return;
  }
  if (holes.empty()) {  // one data chunk, final
    EncodeStructuredHeader(req.buf->data(), NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                           h.cookie, 8 + h.length);
    StoreBE64(req.buf->data() + kStructuredReplyHeaderSize, h.offset);
    AppendOwned(req.buf, req.buf->data(), req.room + h.length);
    return;
  }
  uint64_t pos = 0;
  auto emit_data = [&](uint64_t from, uint64_t to) {
    if (from >= to) return;
    uint8_t hdr[kStructuredReplyHeaderSize + 8];
    EncodeStructuredHeader(hdr, 0, NBD_REPLY_TYPE_OFFSET_DATA, h.cookie,
                           static_cast<uint32_t>(8 + (to - from)));
    StoreBE64(hdr + kStructuredReplyHeaderSize, h.offset + from);
    AppendSmall({reinterpret_cast<char*>(hdr), sizeof hdr});
    AppendOwned(req.buf, data + from, to - from);
  };
  for (const auto& hole : holes) {
    emit_data(pos, hole.offset);
    uint8_t hdr[kStructuredReplyHeaderSize + 12];
    EncodeStructuredHeader(hdr, 0, NBD_REPLY_TYPE_OFFSET_HOLE, h.cookie, 12);
    StoreBE64(hdr + kStructuredReplyHeaderSize, h.offset + hole.offset);
    StoreBE32(hdr + kStructuredReplyHeaderSize + 8, static_cast<uint32_t>(hole.length));
    AppendSmall({reinterpret_cast<char*>(hdr), sizeof hdr});
    pos = hole.offset + hole.length;
  }
  emit_data(pos, h.length);
  uint8_t done[kStructuredReplyHeaderSize];
  EncodeStructuredHeader(done, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, h.cookie, 0);
  AppendSmall({reinterpret_cast<char*>(done), sizeof done});
}

void Session::Observe(const RequestHeader& h, uint64_t observer_token, uint32_t error) {
  if (export_ && export_->observer) export_->observer->OnReply(h, observer_token, error);
}

void Session::OnTlsStarted() {
  PORTAL_ASSERT(phase_ == Phase::kStartTls, "OnTlsStarted without STARTTLS");
  handshake_.TlsStarted();
  phase_ = Phase::kHandshake;
  in_begin_ = in_end_ = 0;
}

void Session::StopReading(Phase next) {
  phase_ = next;
  in_begin_ = in_end_ = 0;
  pending_write_.reset();  // an incomplete WRITE never reaches the device
  drain_left_ = 0;
}

void Session::Shutdown() {
  if (phase_ == Phase::kHandshake || phase_ == Phase::kStartTls) {
    phase_ = Phase::kClosed;
    return;
  }
  if (phase_ != Phase::kTransmission) return;
  if (kernel_) {
    // Only what has started is answered; the rest goes back to the kernel's queue.
    StopReading(Phase::kDraining);
    return;
  }
  // Every request whose header we have read gets an answer before the connection ends.
  shutting_down_ = true;
  if (pending_write_) {  // its payload will not be read: answer it now
    ReplyError(*pending_write_, NBD_ESHUTDOWN, "server is shutting down");
    pending_write_.reset();
  }
  ProcessTransmission();  // buffered requests: NBD_ESHUTDOWN each
  if (phase_ == Phase::kTransmission && drain_left_ > 0) {
    // A WRITE whose payload is only partly buffered: answer it without the rest.
    ReplyDrained(drain_error_ == NBD_ESHUTDOWN ? "server is shutting down"
                                               : "invalid write request");
  }
  StopReading(Phase::kDraining);
}

PeerWait Session::peer_wait() const {
  PeerWait w;
  if (phase_ == Phase::kHandshake) return w;  // the server's handshake timer covers it
  // Replies are owed also while draining: a client that half-closed and stopped reading
  // would otherwise hold its slot forever.
  if (out_bytes_ > 0 && !output_broken_) w.reply = chunks_sent_ + 1;
  if (phase_ != Phase::kTransmission) return w;
  const size_t buffered = in_end_ - in_begin_;
  if (pending_write_ || drain_left_ > 0) {
    w.request = headers_read_;  // its header is read; the payload is owed
  } else if (buffered > 0 && buffered < kRequestHeaderSize && !Paused()) {
    w.request = headers_read_ + 1;  // part of the next header is read
  }
  if (inflight_ == 0 && out_bytes_ == 0 && buffered == 0 && w.request == 0 && !budget_wait_) {
    w.idle = headers_read_ + 1;
  }
  return w;
}

bool Session::Finished() const {
  return phase_ == Phase::kClosed || (phase_ == Phase::kDraining && inflight_ == 0);
}

void Session::OnOutputError() {
  output_broken_ = true;
  out_.clear();
  out_bytes_ = 0;
  out_front_pos_ = 0;
  if (phase_ == Phase::kHandshake || phase_ == Phase::kStartTls) {
    phase_ = Phase::kClosed;
  } else if (phase_ == Phase::kTransmission) {
    StopReading(Phase::kDraining);
  }
}

void Session::AppendSmall(std::string_view bytes) {
  if (bytes.empty() || output_broken_) return;
  if (!out_.empty() && out_.back().arena &&
      out_.back().len + bytes.size() <= out_.back().owner->size()) {
    OutChunk& c = out_.back();
    std::memcpy(c.owner->data() + c.len, bytes.data(), bytes.size());
    c.len += bytes.size();
  } else {
    auto arena = std::make_shared<Buffer>(std::max(kArenaBytes, bytes.size()));
    std::memcpy(arena->data(), bytes.data(), bytes.size());
    const uint8_t* p = arena->data();
    out_.push_back(OutChunk{std::move(arena), p, bytes.size(), true});
  }
  out_bytes_ += bytes.size();
}

void Session::AppendOwned(std::shared_ptr<Buffer> owner, const uint8_t* data, size_t len) {
  if (len == 0 || output_broken_) return;
  out_.push_back(OutChunk{std::move(owner), data, len, false});
  out_bytes_ += len;
}

void Session::GatherOutput(std::vector<std::span<const uint8_t>>* bufs, size_t max) const {
  size_t i = 0;
  for (const OutChunk& c : out_) {
    if (i == max) break;
    size_t skip = (i == 0) ? out_front_pos_ : 0;
    bufs->emplace_back(c.data + skip, c.len - skip);
    ++i;
  }
}

void Session::ConsumeOutput(size_t n) {
  PORTAL_ASSERT(n <= out_bytes_, "consumed more output than queued");
  out_bytes_ -= n;
  while (n > 0) {
    OutChunk& c = out_.front();
    size_t rest = c.len - out_front_pos_;
    if (n < rest) {
      out_front_pos_ += n;
      break;
    }
    n -= rest;
    out_.pop_front();
    out_front_pos_ = 0;
    ++chunks_sent_;
  }
  // Unsent replies count against the byte bound, so sending them may lift it: parse the
  // requests it held back now. Waiting for more input instead would hang a client that
  // sent everything and only reads replies (and a half-close would drop those requests).
  if (phase_ == Phase::kTransmission && in_end_ - in_begin_ >= kRequestHeaderSize && !Paused()) {
    ProcessInput();
  }
}

}  // namespace portal::nbd
