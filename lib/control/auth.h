// Auth: the shared-secret handshake of the control protocol over TCP (docs/control.md
// "Over TCP"). The unix socket needs none (its file permissions decide who connects);
// a TCP connection's first request must be
//
//   {"op":"auth","token":"<the secret>"}        -> {"ok":true}
//
// and anything else first (another op, a bad line, a wrong token) is answered with an
// "unauthenticated" error and the connection is closed. The secret is the content of
// [control] token_file, shared with whoever may ask the daemon to act (the CSI
// controller): printable ASCII, at least kMinTokenBytes, in a file others may not read.
//
// Sans-io: lines in, verdicts out; control/server.cc does the I/O and the deadline.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/protocol.h"
#include "util/status.h"

namespace portal::control {

inline constexpr std::string_view kUnauthenticated = "unauthenticated";
inline constexpr size_t kMinTokenBytes = 32;
inline constexpr size_t kMaxTokenBytes = 4096;

// Reads a token file: its content without trailing whitespace (a newline from `echo`).
// InvalidArgument, naming `key` and the file, if it cannot be read, is readable
// by every user (mode & 0004), holds fewer than kMinTokenBytes or more than
// kMaxTokenBytes, or anything but printable ASCII.
Result<std::string> LoadTokenFile(const std::string& path,
                                  std::string_view key = "control.token_file");

// Whether `given` equals `expected`, in time that depends on neither (both are hashed,
// the digests compared with CRYPTO_memcmp): a peer learns nothing from how long a wrong
// guess takes, not even its length.
bool TokenEquals(std::string_view expected, std::string_view given);

// The first line of a TCP connection. nullopt: a valid auth request with the right
// token; else the error to send before closing (the line's id, if it had a valid one,
// in `id_json`).
std::optional<ErrorReply> CheckAuthLine(std::string_view line, std::string_view expected,
                                        std::string* id_json);

// {"op":"auth","token":"..."} and its newline (the client side).
std::string EncodeAuthRequest(std::string_view token);

}  // namespace portal::control
