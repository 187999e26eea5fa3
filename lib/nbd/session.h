// Session: one NBD connection, sans-io. The server's socket adapter (server.cc) and the
// byte-exact tests drive the same code:
//
//   session.Start();                            // queues the greeting
//   loop:
//     span = session.InputSpace();              // read into it (empty: don't read now)
//     session.CommitInput(n) / OnInputEof();
//     session.GatherOutput(&bufs) -> write -> session.ConsumeOutput(n) / OnOutputError();
//     if (session.Finished() && !session.HasOutput()) close;
//     if (session.WantsTls() && !session.HasOutput()) TLS handshake -> OnTlsStarted()
//                                                     (or OnOutputError() if it fails)
//
// Requests run concurrently on the device (many per connection); replies go out in
// completion order. A request's completion re-enters the session through
// Host::RunInContext, so every Session method runs in one serialized context (the
// connection's strand) and the class needs no locks.
//
// Bounds: at most max_inflight_requests requests and max_inflight_bytes of READ/WRITE
// payload plus queued output at once; past either, InputSpace() is empty (the socket is
// not read) until replies drain. With a shared `budget` (nbd/inflight_budget.h), a READ's
// or WRITE's payload bytes are also taken from it before its header is parsed; when they
// do not fit, the session stops reading until the budget wakes it. Oversized WRITE
// payloads are discarded as they stream in, never buffered.
//
// Large WRITE payloads (at least kDirectPayloadBytes) are read straight into their own
// buffer: after one, InputSpace() offers only the rest of the next request header, so
// that the next payload does not arrive in the input buffer and need a copy. Small
// requests are read in batches of up to input_buffer_bytes.
//
// Observation: when the opened export carries a RequestObserver, every request is
// reported to it as read and as answered (nbd/request_observer.h).
//
// Lifetime: the host must keep the Session alive while inflight() > 0; KeepAlive()
// tokens are held by running requests for that purpose.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nbd/export.h"
#include "nbd/handshake.h"
#include "nbd/inflight_budget.h"
#include "nbd/peer_deadline.h"
#include "nbd/transmission.h"
#include "util/buffer.h"
#include "util/buffer_recycler.h"

namespace portal::nbd {

class Session {
 public:
  struct Options {
    uint32_t max_inflight_requests = 256;
    uint64_t max_inflight_bytes = 128ull << 20;
    size_t input_buffer_bytes = 256 * 1024;
    // STARTTLS policy (handshake.h); the host must be able to upgrade unless kOff.
    TlsMode tls = TlsMode::kOff;
    // Shared by every session of a server; null: none. Must outlive the session and
    // every reply buffer it queued.
    InflightBudget* budget = nullptr;
    // Where WRITE payload buffers come from (util/buffer_recycler.h); null: plain
    // allocations. Must outlive the session (its buffers may outlive it).
    BufferRecycler* recycler = nullptr;
  };

  class Host {
   public:
    virtual ~Host() = default;
    // Runs fn later (never inline) in the session's serialized context, then lets the
    // host act on the session's new state (write output, read input, close).
    virtual void RunInContext(std::function<void()> fn) = 0;
    // A token that keeps the host and the session alive while held (may be null when
    // the host outlives every request by construction, as in tests).
    virtual std::shared_ptr<void> KeepAlive() = 0;
  };

  static constexpr uint32_t kDirectPayloadBytes = 64 * 1024;

  Session(ExportCatalog& catalog, Host& host, Options options, std::string peer);
  Session(ExportCatalog& catalog, Host& host, std::string peer)
      : Session(catalog, host, Options{}, std::move(peer)) {}
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void Start();
  // Instead of Start(), for a peer that skips the handshake: the kernel's NBD client,
  // handed a socket through netlink (nbdlink), which was told the export's transmission
  // flags directly. The session is in transmission on `exp` at once, with simple replies.
  // Such a session's Shutdown() answers nothing that has not started: the kernel requeues
  // unanswered requests on the connection it is handed next (after its I/O timeout),
  // while an error reply would fail them.
  void StartTransmission(std::shared_ptr<OpenExport> exp);
  // A kernel session's size after the volume was resized (requests are checked against it).
  void SetSize(uint64_t size_bytes);

  // Where the next bytes from the peer should be read to; empty when the session does
  // not want input now (paused by a bound, or finished reading).
  std::span<uint8_t> InputSpace();
  void CommitInput(size_t n);
  // The peer closed its side, or reading failed.
  void OnInputEof();

  bool HasOutput() const { return out_bytes_ > 0; }
  // Appends up to `max` pending output buffers, in order.
  void GatherOutput(std::vector<std::span<const uint8_t>>* bufs, size_t max) const;
  // `n` bytes were written. May parse and start requests that the byte bound held back
  // (so new output may be queued).
  void ConsumeOutput(size_t n);
  // Writing failed: output is dropped from now on; requests finish, then Finished().
  void OnOutputError();

  // Server stopping: read no more requests; those in flight finish normally; those
  // already received but not yet started (buffered behind a bound) are answered with
  // NBD_ESHUTDOWN, as the spec recommends, rather than dropped unanswered; then finish.
  void Shutdown();

  // Nothing more will happen: once output is drained (or broken), close the socket.
  bool Finished() const;
  uint64_t inflight() const { return inflight_; }
  bool in_transmission() const { return phase_ == Phase::kTransmission; }
  // Still negotiating (not yet in transmission, nor draining or closed after it).
  bool in_handshake() const { return phase_ == Phase::kHandshake || phase_ == Phase::kStartTls; }
  // STARTTLS was acknowledged: once the output is sent, the host runs the TLS handshake
  // and calls OnTlsStarted(); until then InputSpace() is empty.
  bool WantsTls() const { return phase_ == Phase::kStartTls; }
  void OnTlsStarted();
  bool tls() const { return handshake_.tls(); }
  const std::string& peer() const { return peer_; }
  // What the session waits on its peer for, for the server's timeouts (peer_deadline.h).
  PeerWait peer_wait() const;

 private:
  struct Request;
  enum class Phase { kHandshake, kStartTls, kTransmission, kDraining, kClosed };

  void ProcessInput();
  void ProcessHandshake();
  void ProcessTransmission();
  bool Paused() const;
  // Takes a READ's or WRITE's payload bytes from options_.budget into `lease`; false when
  // they do not fit (the session then waits for the budget's wake-up).
  bool TakeBudget(const RequestHeader& h, InflightBudget::Lease* lease);
  void Dispatch(std::unique_ptr<Request> req);
  void Complete(std::unique_ptr<Request> req);
  void ReplyError(const Request& req, uint32_t error, std::string_view message);
  void ReplyError(const RequestHeader& h, uint64_t observer_token, uint32_t error,
                  std::string_view message);
  void ReplyDrained(std::string_view message);  // answers the drained WRITE
  void Observe(const RequestHeader& h, uint64_t observer_token, uint32_t error);
  void EncodeReply(Request& req);
  void EncodeRead(Request& req);
  void StopReading(Phase next);

  // Output queue.
  struct OutChunk {
    std::shared_ptr<Buffer> owner;
    const uint8_t* data;
    size_t len;
    bool arena;  // a small-reply arena that may still grow
  };
  void AppendSmall(std::string_view bytes);
  void AppendOwned(std::shared_ptr<Buffer> owner, const uint8_t* data, size_t len);

  ExportCatalog& catalog_;
  Host& host_;
  const Options options_;
  const std::string peer_;
  Phase phase_ = Phase::kHandshake;
  Handshake handshake_;
  Negotiated n_;
  std::shared_ptr<OpenExport> export_;

  // Input: bytes [in_begin_, in_end_) of in_ are read but not yet parsed.
  Buffer in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  // A WRITE whose payload is being read straight into its own buffer.
  std::unique_ptr<Request> pending_write_;
  // The last request parsed was a WRITE of at least kDirectPayloadBytes: read the next
  // header alone.
  bool header_alone_ = false;
  // An invalid or oversized WRITE payload being discarded; then reply `drain_error_`.
  uint64_t drain_left_ = 0;
  RequestHeader drain_header_;
  uint64_t drain_token_ = 0;  // its RequestObserver token
  uint32_t drain_error_ = 0;

  bool shutting_down_ = false;  // Shutdown() is answering buffered requests
  bool kernel_ = false;         // StartTransmission(): no handshake, no shutdown replies
  bool budget_wait_ = false;    // a header waits for options_.budget's bytes
  uint64_t headers_read_ = 0;   // request headers parsed (PeerWait numbering)
  uint64_t chunks_sent_ = 0;    // output chunks fully written (PeerWait numbering)
  uint64_t inflight_ = 0;
  uint64_t inflight_bytes_ = 0;

  std::deque<OutChunk> out_;
  size_t out_front_pos_ = 0;  // bytes of out_.front() already written
  uint64_t out_bytes_ = 0;
  bool output_broken_ = false;
};

}  // namespace portal::nbd
