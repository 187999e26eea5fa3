// TLS credentials for NBD_OPT_STARTTLS, loaded once at start with OpenSSL.
//
// X.509: a certificate (chain) and its private key, both PEM. With a CA file the peer must
// present a certificate that CA signed (mutual TLS: the client's authentication). PSK:
// psktool's file of "identity:hexkey" lines (what nbdkit --tls-psk and qemu's
// tls-creds-psk read); TLS 1.3 uses a PSK with SHA-256, TLS 1.2 the PSK cipher suites.
// TLS 1.2 is the oldest version spoken (proto.md: "MUST support TLS version 1.2");
// renegotiation and session tickets are off.
//
// Asio stays out of this header: context() hands the asio::ssl::context to the .cc files
// that wrap sockets (nbd/server.cc).
//
// Thread-safety: immutable after Create; context() may be used by many connections.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util/status.h"

namespace asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL

namespace portal::nbd {

struct TlsOptions {
  std::string cert_file;  // PEM certificate chain of this side (server: required for X.509)
  std::string key_file;   // PEM private key of cert_file
  std::string ca_file;    // peers must present a certificate this CA signed
  std::string psk_file;   // "identity:hexkey" lines
};

class TlsContext {
 public:
  // Server credentials. Every file must be readable, the key must match the certificate
  // and every PSK line parse; errors name the option (tls_cert, tls_key, tls_ca,
  // tls_psk_file), the file and what is wrong. Needs a certificate and key or a PSK file
  // (not both); a CA needs a certificate.
  static Result<std::unique_ptr<TlsContext>> CreateServer(const TlsOptions& options);
  // Client credentials (trace-record's upstream side): the server's certificate must chain
  // to ca_file (the system's CAs without it); cert_file and key_file, both or neither, are
  // this side's certificate for servers that ask for one. PSK is not offered. Errors name
  // trace-record's options (upstream-tls-ca, upstream-tls-cert, upstream-tls-key).
  static Result<std::unique_ptr<TlsContext>> CreateClient(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  asio::ssl::context& context();
  // Peers must present a certificate signed by the CA (ca_file was given).
  bool verifies_peer() const;
  size_t psk_identities() const;
  // Things worth a warning in the log (an expired certificate).
  const std::vector<std::string>& warnings() const;

 private:
  struct Impl;
  explicit TlsContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Before a client handshake: the name the server's certificate must carry (a DNS name,
// also sent as SNI, or an IP address). Without it only the CA chain is checked.
Status SetPeerName(ssl_st* ssl, const std::string& hostname);

// "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 peer=\"CN=client\"" (or psk_identity=...)
// for the log line of an established session.
std::string DescribeTlsSession(ssl_st* ssl);

// Parses a PSK file's text ("identity:hexkey" per line; blank lines skipped). Errors name
// the line. Identities are unique, at most 128 bytes; keys 1 to 64 bytes.
Result<std::map<std::string, std::string>> ParsePskFile(std::string_view text);

// The OpenSSL error queue as one message (and emptied, so the next call starts clean).
std::string OpenSslErrors();

}  // namespace portal::nbd
