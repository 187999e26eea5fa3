// The daemon's state for systemd (Type=notify in portalbd@.service), as sd_notify(3)
// sends it, without libsystemd: one datagram to the socket named by $NOTIFY_SOCKET.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace portal::daemon {

// Sends `state` ("READY=1", "STOPPING=1"). Does nothing when $NOTIFY_SOCKET is unset (not
// started by systemd). Best effort: a failure loses the message only; systemd then sees
// the start time out (Type=notify) rather than a daemon that is not serving.
inline void SdNotify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&addr),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  ::close(fd);
}

}  // namespace portal::daemon
