// Server side of the fixed newstyle handshake, sans-io: bytes in, bytes out, a verdict.
//
//   Handshake hs(catalog, options);
//   hs.Begin(&out);                    // the greeting: NBDMAGIC IHAVEOPT flags
//   size_t used = hs.Consume(input, &out);   // repeat as bytes arrive
//   switch (hs.state()) { ... }
//
// Options served: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
// LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation). Anything else gets
// NBD_REP_ERR_UNSUP and the connection continues. Unknown client flags end the
// connection (the spec's MUST). Every peer-controlled size is bounded: option payloads
// over kMaxOptionLength are discarded as they stream in (never buffered) and answered
// with NBD_REP_ERR_TOO_BIG; after kMaxOptions options the connection is dropped.
//
// TLS (proto.md "TLS support"), by TlsMode:
//   kOff      NOTLS: STARTTLS gets NBD_REP_ERR_UNSUP.
//   kOn       SELECTIVETLS with no TLS-only export: STARTTLS upgrades, plaintext works.
//   kRequire  FORCEDTLS: before the upgrade every option but STARTTLS and ABORT gets
//             NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which cannot fail, hangs up); a client
//             without NBD_FLAG_C_FIXED_NEWSTYLE cannot upgrade and is dropped.
// STARTTLS answered with ACK leaves the handshake in kStartTls: the caller sends the
// output, upgrades the transport, then calls TlsStarted(). Option state negotiated before
// (structured replies, meta contexts) is forgotten then, as the spec requires.
//
// Not thread-safe: one instance per connection.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "nbd/export.h"

namespace portal::nbd {

enum class TlsMode { kOff, kOn, kRequire };
// "off", "on", "require" (the [nbd] tls values).
Result<TlsMode> ParseTlsMode(std::string_view name);
std::string_view TlsModeName(TlsMode mode);

struct Negotiated {
  std::shared_ptr<OpenExport> export_;
  uint16_t transmission_flags = 0;
  bool structured_replies = false;
  bool no_zeroes = false;
  // Context id for base:allocation, if the client selected it for this export.
  bool base_allocation = false;
  uint32_t base_allocation_id = 0;
};

class Handshake {
 public:
  enum class State {
    kNegotiating,   // wants more input
    kTransmission,  // done: negotiated() is valid; leftover input belongs to transmission
    kAborted,       // client sent NBD_OPT_ABORT (soft disconnect): flush output, close
    kStartTls,      // STARTTLS acknowledged: flush output, upgrade, then TlsStarted()
    kHardClose,     // protocol violation: close now
  };

  static constexpr uint32_t kMaxOptionLength = 64 * 1024;
  static constexpr uint32_t kMaxOptions = 4096;

  explicit Handshake(ExportCatalog& catalog, TlsMode tls = TlsMode::kOff)
      : catalog_(catalog), tls_mode_(tls) {}

  // Appends the server greeting to `out`.
  void Begin(std::string* out);
  // Consumes what it can of `in`; appends replies to `out`. Returns bytes consumed.
  size_t Consume(std::span<const uint8_t> in, std::string* out);
  // Server shutting down: further options get NBD_REP_ERR_SHUTDOWN.
  void SetShuttingDown() { shutting_down_ = true; }
  // The transport is now TLS (after kStartTls): negotiation resumes from a clean slate.
  void TlsStarted();
  bool tls() const { return tls_; }

  State state() const { return state_; }
  // Why the handshake ended in kHardClose (for the log).
  const std::string& error() const { return error_; }
  Negotiated& negotiated() { return negotiated_; }

  // Transmission flags for an export, given what was negotiated.
  static uint16_t TransmissionFlags(const ExportInfo& info, bool structured);

 private:
  void HandleOption(uint32_t option, std::string_view data, std::string* out);
  void HandleExportName(std::string_view data, std::string* out);
  void HandleInfoOrGo(uint32_t option, std::string_view data, std::string* out);
  void HandleList(std::string_view data, std::string* out);
  void HandleMetaContext(uint32_t option, std::string_view data, std::string* out);
  void Fail(std::string why);
  // FORCEDTLS and not yet upgraded: options other than STARTTLS and ABORT are refused.
  bool TlsRequired(uint32_t option) const;

  ExportCatalog& catalog_;
  const TlsMode tls_mode_;
  bool tls_ = false;
  State state_ = State::kNegotiating;
  std::string error_;
  bool got_client_flags_ = false;
  bool fixed_newstyle_ = false;
  bool shutting_down_ = false;
  uint32_t options_seen_ = 0;
  // An oversized option being discarded: its code and the bytes still to skip.
  bool discarding_ = false;
  uint32_t discard_option_ = 0;
  uint64_t discard_left_ = 0;
  bool structured_ = false;
  bool no_zeroes_ = false;
  // SET_META_CONTEXT state: the export it was for, and whether base:allocation is on.
  bool meta_set_ = false;
  std::string meta_export_;
  bool meta_base_allocation_ = false;
  Negotiated negotiated_;
};

// Option-reply helper shared by the handshake and tests.
void AppendOptionReply(std::string* out, uint32_t option, uint32_t type,
                       std::string_view payload);

}  // namespace portal::nbd
