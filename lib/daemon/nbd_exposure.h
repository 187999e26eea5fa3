// Whether the NBD port is open to the network without TLS, in words for the log.
#pragma once

#include <string>

namespace portal::daemon {

// The warning to log at start when `address` (as [nbd] address takes it) is reachable
// from other hosts and TLS is off: anyone who can reach the port can read and overwrite
// the whole device. "" when the address is a unix socket or loopback (127.0.0.0/8, ::1),
// or TLS is on. A host name counts as not loopback: it is not resolved here.
std::string NbdExposureWarning(const std::string& address, bool tls_on);

// The same for [control] listen: its token travels in clear without TLS.
std::string ControlExposureWarning(const std::string& address, bool tls_on);

}  // namespace portal::daemon
