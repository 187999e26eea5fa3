#include "nbd/tls.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>

namespace portal::nbd {

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

namespace {

constexpr size_t kMaxPskFileBytes = 1 << 20;
constexpr size_t kMaxPskIdentityBytes = 128;
constexpr size_t kMaxPskKeyBytes = 64;


// A clear message for the commonest mistakes (missing file, no permission) before
// OpenSSL's own, which says "system lib" at best.
Status CheckReadable(const char* key, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::InvalidArgument(fmt::format("{} {}: {}", key, path, std::strerror(errno)));
  }
  ::close(fd);
  return Status::Ok();
}

Result<std::string> ReadSmallFile(const char* key, const std::string& path) {
  RETURN_IF_ERROR(CheckReadable(key, path));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::string text;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::InvalidArgument(fmt::format("{} {}: {}", key, path, std::strerror(err)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxPskFileBytes) {
      ::close(fd);
      return Status::InvalidArgument(
          fmt::format("{} {}: larger than {} bytes", key, path, kMaxPskFileBytes));
    }
  }
  ::close(fd);
  return text;
}

// Where an SSL_CTX keeps its TlsContext::Impl for the PSK callback (OpenSSL passes the
// callback no argument). Not app_data: asio::ssl::context keeps its verify callback there.
// Registered once per process; an index, not state.
int ImplIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Per connection: the PSK identity the client authenticated with (a key of the Impl's
// table, which outlives every connection), for the log: OpenSSL's SSL_get_psk_identity
// is empty in TLS 1.3 with the PSK callback.
int IdentityIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

struct TlsContext::Impl {
  explicit Impl(asio::ssl::context::method method) : ctx(method) {}
  asio::ssl::context ctx;
  bool verifies_peer = false;
  std::map<std::string, std::string> psk;  // identity -> key
  std::vector<std::string> warnings;

  // OpenSSL's PSK callback (TLS 1.2, and TLS 1.3 with SHA-256): the key of `identity`.
  static unsigned int FindPsk(SSL* ssl, const char* identity, unsigned char* psk,
                              unsigned int max_psk_len) {
    auto* self = static_cast<Impl*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ImplIndex()));
    if (self == nullptr || identity == nullptr) return 0;
    auto it = self->psk.find(identity);
    if (it == self->psk.end() || it->second.size() > max_psk_len) return 0;  // handshake fails
    std::memcpy(psk, it->second.data(), it->second.size());
    if (IdentityIndex() >= 0) {
      SSL_set_ex_data(ssl, IdentityIndex(), const_cast<char*>(it->first.c_str()));
    }
    return static_cast<unsigned int>(it->second.size());
  }
};

Result<std::map<std::string, std::string>> ParsePskFile(std::string_view text) {
  std::map<std::string, std::string> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t colon = line.rfind(':');
    auto bad = [&](std::string_view why) {
      return Status::InvalidArgument(fmt::format("line {}: {}", line_no, why));
    };
    if (colon == std::string_view::npos || colon == 0) {
      return bad("expected identity:hexkey (as psktool writes)");
    }
    std::string_view identity = line.substr(0, colon);
    std::string_view hex = line.substr(colon + 1);
    if (identity.size() > kMaxPskIdentityBytes) {
      return bad(fmt::format("identity longer than {} bytes", kMaxPskIdentityBytes));
    }
    if (hex.empty() || hex.size() % 2 != 0 || hex.size() / 2 > kMaxPskKeyBytes) {
      return bad(fmt::format("key must be 1 to {} bytes in hex", kMaxPskKeyBytes));
    }
    std::string key;
    for (size_t i = 0; i < hex.size(); i += 2) {
      int hi = HexDigit(hex[i]), lo = HexDigit(hex[i + 1]);
      if (hi < 0 || lo < 0) return bad("key is not hexadecimal");
      key.push_back(static_cast<char>(hi * 16 + lo));
    }
    if (!out.emplace(std::string(identity), std::move(key)).second) {
      return bad(fmt::format("identity '{}' appears twice", identity));
    }
  }
  return out;
}

TlsContext::TlsContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() = default;

asio::ssl::context& TlsContext::context() { return impl_->ctx; }
bool TlsContext::verifies_peer() const { return impl_->verifies_peer; }
size_t TlsContext::psk_identities() const { return impl_->psk.size(); }
const std::vector<std::string>& TlsContext::warnings() const { return impl_->warnings; }

Result<std::unique_ptr<TlsContext>> TlsContext::CreateServer(const TlsOptions& o) {
  const bool x509 = !o.cert_file.empty() || !o.key_file.empty();
  if (x509 && (o.cert_file.empty() || o.key_file.empty())) {
    return Status::InvalidArgument(o.cert_file.empty() ? "tls_key is set without tls_cert"
                                                       : "tls_cert is set without tls_key");
  }
  if (!x509 && o.psk_file.empty()) {
    return Status::InvalidArgument("TLS needs tls_cert and tls_key, or tls_psk_file");
  }
  if (!o.ca_file.empty() && !x509) {
    return Status::InvalidArgument("tls_ca needs tls_cert and tls_key (the server's own)");
  }
  if (x509 && !o.psk_file.empty()) {
    // One or the other, as in nbdkit. Both at once would let a certificate-less TLS client
    // in without tls_ca; and with tls_ca OpenSSL asks PSK clients for a certificate too
    // (GnuTLS clients then fail: "Insufficient credentials").
    return Status::InvalidArgument(
        "tls_psk_file and tls_cert/tls_key exclude each other: use PSK or certificates");
  }
  auto impl = std::make_unique<Impl>(asio::ssl::context::tls_server);
  SSL_CTX* ctx = impl->ctx.native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(ctx, 0);  // clients reconnect with a full handshake
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (ImplIndex() < 0 || SSL_CTX_set_ex_data(ctx, ImplIndex(), impl.get()) != 1) {
    return Status::IOError("OpenSSL: cannot attach the PSK table: " + OpenSslErrors());
  }

  if (x509) {
    RETURN_IF_ERROR(CheckReadable("tls_cert", o.cert_file));
    RETURN_IF_ERROR(CheckReadable("tls_key", o.key_file));
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
      return Status::InvalidArgument(
          fmt::format("tls_cert {}: not a PEM certificate: {}", o.cert_file, OpenSslErrors()));
    }
    // Parsed apart from SSL_CTX_use_PrivateKey, which refuses a key not matching the
    // certificate with the same error as a file that holds no key.
    EVP_PKEY* key = nullptr;
    if (BIO* bio = BIO_new_file(o.key_file.c_str(), "r")) {
      key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
      BIO_free(bio);
    }
    if (key == nullptr) {
      return Status::InvalidArgument(
          fmt::format("tls_key {}: not a PEM private key (or one with a passphrase): {}",
                      o.key_file, OpenSslErrors()));
    }
    const int used = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      return Status::InvalidArgument(
          fmt::format("tls_key {} does not match the certificate in tls_cert {}: {}", o.key_file,
                      o.cert_file, OpenSslErrors()));
    }
    if (X509* cert = SSL_CTX_get0_certificate(ctx)) {
      if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
        impl->warnings.push_back(fmt::format(
            "tls_cert {} has expired: clients checking it will refuse to connect", o.cert_file));
      } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
        impl->warnings.push_back(
            fmt::format("tls_cert {} is not valid yet (check the clock)", o.cert_file));
      }
    }
  }
  if (!o.ca_file.empty()) {
    RETURN_IF_ERROR(CheckReadable("tls_ca", o.ca_file));
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      return Status::InvalidArgument(
          fmt::format("tls_ca {}: no PEM certificate: {}", o.ca_file, OpenSslErrors()));
    }
    // Tells clients which CA we accept, so one with several certificates picks right.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    impl->verifies_peer = true;
  }
  if (!o.psk_file.empty()) {
    auto text = ReadSmallFile("tls_psk_file", o.psk_file);
    if (!text.ok()) return text.status();
    auto keys = ParsePskFile(*text);
    if (!keys.ok()) {
      return Status::InvalidArgument(
          fmt::format("tls_psk_file {}: {}", o.psk_file, keys.status().message()));
    }
    if (keys->empty()) {
      return Status::InvalidArgument(fmt::format("tls_psk_file {}: no keys", o.psk_file));
    }
    impl->psk = std::move(*keys);
    SSL_CTX_set_psk_server_callback(ctx, &Impl::FindPsk);
  }
  ERR_clear_error();
  return std::unique_ptr<TlsContext>(new TlsContext(std::move(impl)));
}

Result<std::unique_ptr<TlsContext>> TlsContext::CreateClient(const TlsOptions& o) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return Status::InvalidArgument(o.cert_file.empty()
                                       ? "upstream-tls-key is set without upstream-tls-cert"
                                       : "upstream-tls-cert is set without upstream-tls-key");
  }
  auto impl = std::make_unique<Impl>(asio::ssl::context::tls_client);
  SSL_CTX* ctx = impl->ctx.native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (!o.cert_file.empty()) {
    RETURN_IF_ERROR(CheckReadable("upstream-tls-cert", o.cert_file));
    RETURN_IF_ERROR(CheckReadable("upstream-tls-key", o.key_file));
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
      return Status::InvalidArgument(fmt::format("upstream-tls-cert {}: not a PEM certificate: {}",
                                                 o.cert_file, OpenSslErrors()));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return Status::InvalidArgument(fmt::format(
          "upstream-tls-key {}: not a PEM private key matching upstream-tls-cert {}: {}",
          o.key_file, o.cert_file, OpenSslErrors()));
    }
  }
  if (!o.ca_file.empty()) {
    RETURN_IF_ERROR(CheckReadable("upstream-tls-ca", o.ca_file));
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      return Status::InvalidArgument(
          fmt::format("upstream-tls-ca {}: no PEM certificate: {}", o.ca_file, OpenSslErrors()));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return Status::InvalidArgument("cannot load the system's CA certificates: " + OpenSslErrors());
  }
  // Never an unchecked server: a wrong certificate fails the handshake.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  impl->verifies_peer = true;
  ERR_clear_error();
  return std::unique_ptr<TlsContext>(new TlsContext(std::move(impl)));
}

Status SetPeerName(ssl_st* ssl, const std::string& hostname) {
  if (hostname.empty()) return Status::Ok();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  // An IP address is matched against the certificate's IP entries, a name against its DNS
  // entries; only a name is sent as SNI (RFC 6066 forbids addresses there).
  if (X509_VERIFY_PARAM_set1_ip_asc(param, hostname.c_str()) == 1) return Status::Ok();
  ERR_clear_error();
  if (SSL_set_tlsext_host_name(ssl, hostname.c_str()) != 1 ||
      SSL_set1_host(ssl, hostname.c_str()) != 1) {
    return Status::InvalidArgument(
        fmt::format("upstream-tls-hostname {}: {}", hostname, OpenSslErrors()));
  }
  return Status::Ok();
}

std::string DescribeTlsSession(ssl_st* ssl) {
  std::string out = fmt::format("version={} cipher={}", SSL_get_version(ssl),
                                SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
  const char* id = IdentityIndex() >= 0
                       ? static_cast<const char*>(SSL_get_ex_data(ssl, IdentityIndex()))
                       : nullptr;
  if (id != nullptr) {
    out += fmt::format(" psk_identity=\"{}\"", id);
  } else if (X509* peer = SSL_get0_peer_certificate(ssl)) {
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
    out += fmt::format(" peer_cert=\"{}\"", name);
  }
  return out;
}

}  // namespace portal::nbd
