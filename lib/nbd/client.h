// Client: an NBD client for tools and tests (trace-bench's --nbd mode). Fixed newstyle
// handshake with GO (ClientHandshake), structured replies when the server offers them,
// many requests in flight on one connection (pipelined; replies in any order).
// Asio stays in client.cc.
//
//   auto c = co_await nbd::Client::Connect(env, {.address = "127.0.0.1:10809"});
//   co_await (*c)->Write(0, data);
//   co_await (*c)->Read(0, buffer);
//
// Requests are validated against what the server announced (read-only, SEND_* flags,
// the export's size, the maximum payload) before they are sent: a bad request fails
// with InvalidArgument/NotSupported and never reaches the server. A server error becomes
// a Status through StatusFromNbdError. If the connection fails, every request in flight
// and every later one fail with IOError.
//
// Thread-safety: every method may be called from any thread, concurrently. Buffers passed
// by span must stay valid until the returned Task completes. The Client must outlive the
// requests it runs; Close() (or the destructor) ends the connection.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "device/block_device.h"
#include "env/real_env.h"
#include "env/task.h"
#include "nbd/client_handshake.h"
#include "util/status.h"

namespace portal::nbd {

// "nbd://HOST[:PORT][/EXPORT]" or "nbd+unix:///EXPORT?socket=PATH" (the NBD URI
// specification, without TLS) -> an address for Client::Options.
struct NbdUri {
  std::string address;  // "host:port" or "unix:/path"
  std::string export_name;
};
Result<NbdUri> ParseNbdUri(std::string_view uri);

class Client {
 public:
  struct Options {
    std::string address;  // "host:port" or "unix:/path"
    std::string export_name;
    bool structured_replies = true;
    bool base_allocation = false;
    uint32_t max_inflight = 512;  // more requests wait in the client
  };

  // Connects and negotiates (blocking work runs on the env's blocking pool).
  static Task<Result<std::unique_ptr<Client>>> Connect(RealEnv& env, Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientNegotiated& negotiated() const;
  uint64_t size_bytes() const { return negotiated().size_bytes; }

  // `flags` are NBD_CMD_FLAG_* bits; those the server did not negotiate are refused.
  Task<Status> Read(uint64_t offset, std::span<uint8_t> out, uint16_t flags = 0);
  Task<Status> Write(uint64_t offset, std::span<const uint8_t> data, uint16_t flags = 0);
  Task<Status> Flush();
  Task<Status> Trim(uint64_t offset, uint32_t length, uint16_t flags = 0);
  Task<Status> WriteZeroes(uint64_t offset, uint32_t length, uint16_t flags = 0);
  Task<Status> Cache(uint64_t offset, uint32_t length);
  // Needs base_allocation negotiated.
  Task<Result<std::vector<device::StatusExtent>>> BlockStatus(uint64_t offset, uint32_t length,
                                                               uint16_t flags = 0);

  // Waits for requests in flight, sends NBD_CMD_DISC and closes. Later requests fail.
  Task<Status> Close();

 private:
  struct Impl;
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace portal::nbd
