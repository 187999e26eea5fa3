// NbdTap: trace-record's view of one proxied NBD connection, sans-io. The proxy hands it
// every byte in each direction; it says which bytes go on, answers the few options it
// must refuse itself, and reports every finished request with its timing.
//
//   client --FromClient--> [tap] --to_server--> upstream
//   client <--to_client--- [tap] <-FromServer-- upstream
//
// Handshake: the server's greeting (fixed newstyle, plain newstyle or oldstyle) and every
// option and option reply pass through unchanged, so the client sees exactly what the
// upstream offers. Two options are answered by the tap and never forwarded:
// NBD_OPT_STARTTLS (below) and NBD_OPT_EXTENDED_HEADERS (NBD_REP_ERR_UNSUP: the tap parses
// compact headers only). The
// tap follows what was negotiated: structured replies (an ACK to STRUCTURED_REPLY), the
// export's size and transmission flags (NBD_INFO_EXPORT of the GO that succeeded, the
// EXPORT_NAME reply, or the oldstyle greeting), and NO_ZEROES.
//
// TLS: each side of the proxy has its own TLS session and the tap sees the plaintext in
// between, so the trace is the same as without TLS.
//   Client side (Options::client_tls, as [nbd] tls): kOff answers STARTTLS with
//   NBD_REP_ERR_POLICY; kOn and kRequire answer ACK and ask for a kClient step (unless an
//   option went upstream before: NBD_REP_ERR_POLICY, as the client would forget what it
//   negotiated and the upstream would not). Under
//   kRequire every option but STARTTLS and ABORT before TLS gets NBD_REP_ERR_TLS_REQD
//   (EXPORT_NAME, which cannot fail, and a client without FIXED_NEWSTYLE end the
//   connection: close_reason()).
//   Upstream side (Options::upstream_tls): right after the client's flags the tap sends
//   its own NBD_OPT_STARTTLS upstream; the reply is not forwarded; an ACK asks for a
//   kUpstream step, anything else ends the connection (never a plaintext fallback).
// A step is done by the caller once everything already output is written, with no raw
// read pending on that side; client bytes are held until TlsStarted().
//
// Option flow: the spec forbids a client to send an option before the previous one's
// final reply; the tap relies on it by holding client bytes (FromClient consumes nothing)
// while an option is unanswered, which also keeps a locally answered option in order.
//
// Transmission: requests are parsed (28-byte headers; WRITE payloads stream through) and
// replies read with ReplyReader. A request is reported when its last reply has been
// read: start = when its header was read, end = when its final reply was read. DISC is
// not a request and is not reported. Unknown command types are forwarded and matched to
// their replies but not reported.
//
// Out of frame (bad magic, an unsolicited reply, a reply for no request): the tap goes
// blind: it forwards everything unparsed for the rest of the connection and reports
// nothing more; blind_reason() says why. The proxy stays transparent either way.
//
// Bounds: at most max_inflight requests are tracked; beyond, FromClient holds client
// bytes until replies drain. Payloads are never buffered.
//
// Not thread-safe: one per connection, driven from one serialized context.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

#include "nbd/handshake.h"  // TlsMode
#include "nbd/reply_reader.h"
#include "trace/trace_format.h"

namespace portal::trace {

// The trace type of an NBD command; empty for DISC and unknown commands.
std::optional<OpType> TraceTypeFromNbd(uint16_t nbd_type);

struct TappedRequest {
  uint16_t nbd_type = 0;
  uint16_t nbd_flags = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  bool success = true;
  // The trace type; empty for command types the trace has no name for.
  std::optional<OpType> type;
};

class NbdTap final : private nbd::ReplyReader::Handler {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    // The transmission phase began on an export of this size.
    virtual void OnExport(uint64_t size_bytes, uint16_t transmission_flags) = 0;
    // A request finished (reported for every request with a trace type).
    virtual void OnRequest(const TappedRequest& request) = 0;
  };

  struct Options {
    size_t max_inflight = 16384;
    nbd::TlsMode client_tls = nbd::TlsMode::kOff;
    bool upstream_tls = false;
  };
  // A TLS handshake the caller must do now (see above).
  enum class TlsStep { kNone, kClient, kUpstream };

  NbdTap(Sink& sink, Options options);
  explicit NbdTap(Sink& sink) : NbdTap(sink, Options{}) {}
  ~NbdTap() override;
  NbdTap(const NbdTap&) = delete;
  NbdTap& operator=(const NbdTap&) = delete;

  // Bytes from the client. Appends what goes upstream to `to_server` and the tap's own
  // answers to `to_client`. Returns the bytes consumed; the rest must be offered again
  // after more server bytes have been consumed.
  size_t FromClient(std::span<const uint8_t> in, uint64_t now_ns, std::string* to_server,
                    std::string* to_client);
  // Bytes from the server; appends what goes to the client. Consumes everything.
  size_t FromServer(std::span<const uint8_t> in, uint64_t now_ns, std::string* to_client);

  bool in_transmission() const { return server_ == ServerState::kTransmission; }
  bool blind() const { return server_ == ServerState::kBlind; }
  const std::string& blind_reason() const { return blind_reason_; }
  bool structured_replies() const { return structured_; }
  std::optional<uint64_t> export_size() const { return export_size_; }
  // Requests read but not yet answered (lost if the connection ends now).
  size_t inflight() const { return pending_.size(); }
  // Options the tap refused itself (STARTTLS under tls off, EXTENDED_HEADERS, TLS_REQD).
  uint32_t refused_options() const { return refused_options_; }

  TlsStep tls_step() const { return tls_step_; }
  // The handshake of tls_step() succeeded: the tap goes on over it.
  void TlsStarted();
  bool client_tls() const { return client_tls_on_; }
  // Not empty: the connection must end once to_client is written (why, for the log).
  const std::string& close_reason() const { return close_reason_; }

 private:
  enum class ClientState {
    kWaitGreeting,  // until the server's greeting is read
    kFlags,         // 4 bytes of client flags
    kOption,        // an option header
    kOptionData,    // forwarding option data
    kDiscard,       // discarding the data of an option the tap answers
    kWaitReply,     // an option is unanswered: hold client bytes
    kRequest,       // a request header
    kWriteData,     // forwarding a WRITE payload
    kPassThrough,   // after DISC or ABORT, or blind: forward unparsed
    kHold,          // a TLS step, or closing: take nothing
  };
  enum class ServerState {
    kGreeting,
    kOptionReply,      // an option reply header
    kOptionReplyData,  // its payload (first bytes captured)
    kExportNameReply,  // size, flags [, 124 zeroes]
    kTransmission,
    kPassThrough,      // after ABORT or a failed EXPORT_NAME
    kBlind,
  };
  struct Pending {
    uint16_t type;
    uint16_t flags;
    uint64_t offset;
    uint32_t length;
    uint64_t start_ns;
    bool success = true;
  };

  void GoBlind(std::string why);
  void ClientOption(uint32_t option, uint32_t length);
  void AnswerRefused(std::string* to_client);
  bool TlsRequired(uint32_t option) const;
  void CloseWith(std::string why);
  void ServerGreeting();
  void OptionReplyDone();
  void BeginTransmission(uint64_t size, uint16_t flags);

  // ReplyReader::Handler
  Result<uint32_t> SimpleReplyDataLength(uint64_t cookie) override;
  void OnData(uint64_t, bool, uint64_t, std::span<const uint8_t>) override {}
  void OnHole(uint64_t, uint64_t, uint32_t) override {}
  void OnExtent(uint64_t, uint32_t, uint32_t, uint32_t) override {}
  void OnError(uint64_t cookie, uint32_t error, std::string_view message) override;
  void OnDone(uint64_t cookie) override;

  Sink& sink_;
  const Options options_;
  ClientState client_ = ClientState::kWaitGreeting;
  ServerState server_ = ServerState::kGreeting;
  std::string blind_reason_;

  // Bytes of a fixed-size header being collected, per direction.
  uint8_t cbuf_[32];
  size_t chave_ = 0;
  uint8_t sbuf_[160];
  size_t shave_ = 0;
  uint64_t cleft_ = 0;  // option data / WRITE payload / discard bytes still to pass
  uint64_t sleft_ = 0;  // option reply payload still to pass

  // Handshake.
  uint16_t server_flags_ = 0;
  bool no_zeroes_ = false;
  bool structured_ = false;
  uint32_t outstanding_option_ = 0;  // the unanswered option (valid in kWaitReply)
  uint32_t discard_option_ = 0;
  uint32_t reply_type_ = 0;          // the option reply being read
  uint32_t reply_length_ = 0;
  std::optional<uint64_t> info_size_;  // from NBD_INFO_EXPORT during a GO
  uint16_t info_flags_ = 0;
  std::optional<uint64_t> export_size_;
  uint32_t refused_options_ = 0;
  uint32_t discard_length_ = 0;
  uint32_t forwarded_options_ = 0;
  bool internal_reply_ = false;  // the reply being read answers the tap's own STARTTLS
  bool client_tls_on_ = false;
  TlsStep tls_step_ = TlsStep::kNone;
  std::string close_reason_;

  // Transmission.
  std::unique_ptr<nbd::ReplyReader> replies_;
  std::unordered_map<uint64_t, Pending> pending_;
  uint64_t now_ns_ = 0;  // of the FromServer call in progress
};

}  // namespace portal::trace
