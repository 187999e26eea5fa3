// PeerDeadline: when an NBD client has kept a connection waiting on it for too long.
// Sans-io (times are numbers the caller passes in); server.cc arms one timer with it.
//
// Without it a client holds a connection slot (max_connections) and the memory of its
// requests for as long as it likes: 64 clients that each announce a WRITE and then send
// its payload one byte a second hold every slot forever, and no one else gets in. Rules:
//
//   request  once the first byte of a request (header) arrives, the whole request, header
//            and payload, must arrive within request_timeout_ms. A rule on silence alone
//            ("no byte for N s") would let the one-byte-a-second client stay forever.
//   reply    a queued reply chunk (at most one READ's data, 32 MiB) must be taken by the
//            client within request_timeout_ms: a client that stops reading would
//            otherwise pin its READ buffers and the server-wide InflightBudget.
//   idle     with idle_timeout_ms > 0, a connection with nothing in flight, queued or
//            partly read for that long is closed. Off by default: nbd-client and qemu
//            connections legitimately sit idle for days between bursts.
//
// Time spent waiting on the server (a request paused by a bound, running on the device,
// a FLUSH waiting for the object store) never counts against the client.
#pragma once

#include <cstdint>

namespace portal::nbd {

// What a Session is waiting on its peer for now (Session::peer_wait()). Each number
// names one request or reply: when it changes, the wait is a new one.
struct PeerWait {
  uint64_t request = 0;  // 0: not in the middle of reading a request
  uint64_t reply = 0;    // 0: no output queued
  uint64_t idle = 0;     // 0: not idle (else a number that changes with every request)
};

class PeerDeadline {
 public:
  struct Options {
    uint64_t request_timeout_ms = 30'000;
    uint64_t idle_timeout_ms = 0;  // 0: idle connections are kept
  };

  explicit PeerDeadline(Options options) : options_(options) {}

  // Records the session's state at `now_ms`; returns when the earliest running deadline
  // expires (ms, the same clock), or 0 when none runs.
  uint64_t Update(const PeerWait& w, uint64_t now_ms);
  // Update(), then which deadline has passed: "request", "reply", "idle", or nullptr.
  const char* Expired(const PeerWait& w, uint64_t now_ms);

  const Options& options() const { return options_; }

 private:
  const Options options_;
  PeerWait last_;
  uint64_t request_since_ms_ = 0;
  uint64_t reply_since_ms_ = 0;
  uint64_t idle_since_ms_ = 0;
};

}  // namespace portal::nbd
