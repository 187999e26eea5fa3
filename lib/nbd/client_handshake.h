// Client side of the fixed newstyle handshake, sans-io: server bytes in, client bytes out.
//
//   ClientHandshake hs(options);
//   loop: used = hs.Consume(server_bytes, &to_server); send to_server;
//   until hs.state() != kNegotiating
//
// Sequence: greeting -> client flags (FIXED_NEWSTYLE, NO_ZEROES when offered) ->
// STRUCTURED_REPLY (if wanted; a refusal is fine) -> SET_META_CONTEXT base:allocation
// (if wanted and structured replies are on) -> GO with an NBD_INFO_BLOCK_SIZE request.
// A server that does not know GO (NBD_REP_ERR_UNSUP) gets EXPORT_NAME instead. Any
// other refusal of GO fails the handshake with the server's message.
//
// Bounds: option reply payloads over kMaxReplyPayload fail the handshake.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "util/status.h"

namespace portal::nbd {

struct ClientNegotiated {
  uint64_t size_bytes = 0;
  uint16_t transmission_flags = 0;
  bool structured_replies = false;
  bool base_allocation = false;
  uint32_t base_allocation_id = 0;
  uint32_t min_block_size = 1;
  uint32_t preferred_block_size = 4096;
  uint32_t max_payload = 32u << 20;
};

class ClientHandshake {
 public:
  struct Options {
    std::string export_name;
    bool structured_replies = true;
    bool base_allocation = false;
  };
  enum class State { kNegotiating, kDone, kFailed };
  static constexpr uint32_t kMaxReplyPayload = 1 << 20;

  explicit ClientHandshake(Options options) : options_(std::move(options)) {}

  // Consumes server bytes (stops at the end of the handshake: bytes after it belong to
  // transmission); appends what to send to `out`. Returns bytes consumed.
  size_t Consume(std::span<const uint8_t> in, std::string* out);

  State state() const { return state_; }
  const Status& error() const { return error_; }
  const ClientNegotiated& negotiated() const { return n_; }

 private:
  enum class Step { kGreeting, kStructured, kMeta, kGo, kExportName };
  void Fail(std::string message);
  void SendGo(std::string* out);
  // Handles one complete option reply.
  void OnReply(uint32_t option, uint32_t type, std::string_view data, std::string* out);

  Options options_;
  State state_ = State::kNegotiating;
  Step step_ = Step::kGreeting;
  Status error_;
  bool no_zeroes_ = false;
  std::string buf_;  // bytes of the message being collected
  ClientNegotiated n_;
};

}  // namespace portal::nbd
