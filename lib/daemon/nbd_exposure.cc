#include "daemon/nbd_exposure.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include "nbd/server.h"

namespace portal::daemon {
namespace {

bool IsLoopback(const std::string& host) {
  in_addr v4;
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.x.x, an IPv4 loopback address in IPv6 form.
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace

std::string NbdExposureWarning(const std::string& address, bool tls_on) {
  if (tls_on) return "";
  auto parsed = nbd::ParseListenAddress(address);
  if (!parsed.ok() || parsed->is_unix || IsLoopback(parsed->host)) return "";
  return fmt::format(
      "NBD address {} is not loopback and TLS is off: anyone who can reach this port can "
      "read and overwrite the whole volume; turn on [nbd] tls, listen on 127.0.0.1 or a "
      "unix socket, or firewall the port",
      address);
}

std::string ControlExposureWarning(const std::string& address, bool tls_on) {
  if (tls_on) return "";
  auto parsed = nbd::ParseListenAddress(address);
  if (!parsed.ok() || parsed->is_unix || IsLoopback(parsed->host)) return "";
  return fmt::format(
      "control.listen {} is not loopback and TLS is off: its token and requests cross the "
      "network in clear, and whoever captures the token may snapshot, resize and release "
      "volumes; set control.tls_cert and control.tls_key",
      address);
}

}  // namespace portal::daemon
