#include "control/client.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace portal::control {

namespace {

Status ErrnoStatus(int err, const std::string& what) {
  return Status::IOError(fmt::format("{}: {}", what, std::strerror(err)));
}

}  // namespace

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

Client::~Client() { ::close(fd_); }

Status Client::Send(std::string_view bytes) {
  while (!bytes.empty()) {
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
    int r = ::poll(&p, 1, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "poll");
    }
    if (r == 0) {  // the deadline check above reports a timeout
      if (tick_) tick_();
      continue;
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) {
        return Status::Unavailable("portalbd closed the control connection " + path_);
      }
      return ErrnoStatus(errno, "reading from the control socket " + path_);
    }
    if (n == 0) {
      return Status::Unavailable("portalbd closed the control connection " + path_ +
                                 " without replying");
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<Reply> Client::Call(const Request& request) {
  RETURN_IF_ERROR(Send(EncodeRequest(request)));
  ASSIGN_OR_RETURN(std::string line, ReadLine());
  return DecodeReply(line);
}

}  // namespace portal::control
