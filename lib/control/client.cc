#include "control/client.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "control/auth.h"
#include "nbd/tls.h"

namespace portal::control {

namespace {

Status ErrnoStatus(int err, const std::string& what) {
  return Status::IOError(fmt::format("{}: {}", what, std::strerror(err)));
}

// "host:port" or "[v6]:port" into its parts.
Status SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Status::InvalidArgument(fmt::format("control address '{}' is not HOST:PORT", address));
  }
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return Status::Ok();
}

// Connects a socket to one of `address`'s resolved addresses within `timeout_ms` each.
Result<int> ConnectTcpSocket(const std::string& address, const std::string& host,
                             const std::string& port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Status::Unavailable(
        fmt::format("cannot resolve control address {}: {}", address, ::gai_strerror(rc)));
  }
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, timeout_ms);
      if (rc == 0) {
        errno = ETIMEDOUT;
        rc = -1;
      } else if (rc > 0) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        rc = err == 0 ? 0 : -1;
      }
    }
    if (rc == 0) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::freeaddrinfo(res);
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return Status::Unavailable(
      fmt::format("cannot connect to portalbd's control listener {}: {}", address, last));
}

}  // namespace

Result<std::unique_ptr<Client>> Client::ConnectTcp(const std::string& address,
                                                   const TcpClientOptions& options) {
  std::string host, port;
  RETURN_IF_ERROR(SplitHostPort(address, &host, &port));
  ASSIGN_OR_RETURN(int fd, ConnectTcpSocket(address, host, port, options.connect_timeout_ms));
  std::unique_ptr<Client> c(new Client(fd, address));
  c->set_timeout_ms(options.connect_timeout_ms);
  if (options.tls) RETURN_IF_ERROR(c->StartTls(options, host));
  RETURN_IF_ERROR(c->Send(EncodeAuthRequest(options.token)));
  ASSIGN_OR_RETURN(std::string line, c->ReadLine());
  ASSIGN_OR_RETURN(Reply reply, DecodeReply(line));
  if (auto* err = std::get_if<ErrorReply>(&reply)) {
    return Status::PermissionDenied(fmt::format("portalbd at {} refused the connection: {}: {}",
                                                address, err->code, err->message));
  }
  c->set_timeout_ms(0);
  return c;
}

Status Client::StartTls(const TcpClientOptions& options, const std::string& host) {
  ssl_ctx_ = SSL_CTX_new(TLS_client_method());
  if (ssl_ctx_ == nullptr) return Status::IOError("TLS: " + nbd::OpenSslErrors());
  SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
  const int loaded =
      options.tls_ca_file.empty()
          ? SSL_CTX_set_default_verify_paths(ssl_ctx_)
          : SSL_CTX_load_verify_locations(ssl_ctx_, options.tls_ca_file.c_str(), nullptr);
  if (loaded != 1) {
    return Status::InvalidArgument(
        fmt::format("TLS CA file '{}': {}", options.tls_ca_file, nbd::OpenSslErrors()));
  }
  ssl_ = SSL_new(ssl_ctx_);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
    return Status::IOError("TLS: " + nbd::OpenSslErrors());
  }
  RETURN_IF_ERROR(
      nbd::SetPeerName(ssl_, options.tls_hostname.empty() ? host : options.tls_hostname));
  // The handshake runs on the blocking socket, bounded by a receive and send timeout.
  timeval tv{options.connect_timeout_ms / 1000, (options.connect_timeout_ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (SSL_connect(ssl_) != 1) {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      ERR_clear_error();
      return Status::PermissionDenied(
          fmt::format("TLS with portalbd at {}: its certificate does not verify: {}", path_,
                      X509_verify_cert_error_string(verify)));
    }
    return Status::Unavailable(
        fmt::format("TLS handshake with portalbd at {} failed: {}", path_, nbd::OpenSslErrors()));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Status::InvalidArgument(
        fmt::format("control socket path '{}' is empty or longer than {} bytes", path,
                    sizeof addr.sun_path - 1));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    switch (err) {
      case ENOENT:
        return Status::Unavailable(fmt::format(
            "portalbd is not running: no control socket at {} (start portalbd, or name its "
            "socket with --socket)",
            path));
      case ECONNREFUSED:
        return Status::Unavailable(fmt::format(
            "portalbd is not running: nobody answers on the control socket {} (a stale file "
            "left by a daemon that died)",
            path));
      case EACCES:
      case EPERM:
        return Status::PermissionDenied(fmt::format(
            "permission denied on the control socket {} (it is mode 0600: run portalctl as "
            "the user that runs portalbd)",
            path));
      default:
        return ErrnoStatus(err, "cannot connect to the control socket " + path);
    }
  }
  return std::unique_ptr<Client>(new Client(fd, path));
}

Client::~Client() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  ::close(fd_);
}

Status Client::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    if (ssl_ != nullptr) {
      size_t written = 0;
      if (SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written) != 1) {
        return Status::Unavailable(
            fmt::format("writing to portalbd at {} over TLS: {}", path_, nbd::OpenSslErrors()));
      }
      bytes.remove_prefix(written);
      continue;
    }
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) {
        return Status::Unavailable("portalbd closed the control connection " + path_);
      }
      return ErrnoStatus(errno, "writing to the control socket " + path_);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<std::string> Client::ReadLine() {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
  for (;;) {
    if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (buf_.size() > kMaxReplyBytes) {
      return Status::Corruption(fmt::format("reply longer than {} bytes", kMaxReplyBytes));
    }
    int wait_ms = -1;
    if (timeout_ms_ > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return Status::Unavailable(
            fmt::format("no reply from portalbd on {} within {} ms", path_, timeout_ms_));
      }
      wait_ms = static_cast<int>(left.count());
    }
    if (tick_ && tick_ms_ > 0 && (wait_ms < 0 || wait_ms > tick_ms_)) wait_ms = tick_ms_;
    pollfd p{fd_, POLLIN, 0};
    // TLS may hold decrypted bytes the socket no longer shows.
    int r = ssl_ != nullptr && SSL_pending(ssl_) > 0 ? 1 : ::poll(&p, 1, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "poll");
    }
    if (r == 0) {  // the deadline check above reports a timeout
      if (tick_) tick_();
      continue;
    }
    auto n = Receive();
    if (!n.ok() && n.status().code() == Status::Code::kShutdown) continue;  // EINTR
    RETURN_IF_ERROR(n.status());
    if (*n == 0) {
      return Status::Unavailable("portalbd closed the control connection " + path_ +
                                 " without replying");
    }
  }
}

Result<size_t> Client::Receive() {
  char chunk[65536];
  if (ssl_ != nullptr) {
    size_t n = 0;
    if (SSL_read_ex(ssl_, chunk, sizeof chunk, &n) == 1) {
      buf_.append(chunk, n);
      return n;
    }
    const int err = SSL_get_error(ssl_, 0);
    if (err == SSL_ERROR_ZERO_RETURN) return size_t{0};
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      ERR_clear_error();
      return size_t{0};  // the peer closed the socket without close_notify
    }
    return Status::Unavailable(
        fmt::format("reading from portalbd at {} over TLS: {}", path_, nbd::OpenSslErrors()));
  }
  ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n < 0) {
    if (errno == EINTR) return Status::Shutdown("interrupted");
    if (errno == ECONNRESET) {
      return Status::Unavailable("portalbd closed the control connection " + path_);
    }
    return ErrnoStatus(errno, "reading from the control socket " + path_);
  }
  buf_.append(chunk, static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

Result<Reply> Client::Call(const Request& request) {
  RETURN_IF_ERROR(Send(EncodeRequest(request)));
  ASSIGN_OR_RETURN(std::string line, ReadLine());
  return DecodeReply(line);
}

}  // namespace portal::control
