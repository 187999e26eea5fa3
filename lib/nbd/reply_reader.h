// ReplyReader: the client side of the transmission phase, sans-io. It parses what a
// server sends (simple replies and structured reply chunks) as bytes arrive in any
// pieces, and reports each reply to a Handler. Used by the NBD client (which puts READ
// data into the caller's buffer) and by trace-record (which only watches).
//
// Simple reply (16):  magic u32 | error u32 | cookie u64 | [READ data: request length]
// Structured chunk:   magic u32 | flags u16 | type u16 | cookie u64 | length u32 | payload
//   OFFSET_DATA (1):  offset u64 | data            -> OnData (streamed, never buffered)
//   OFFSET_HOLE (2):  offset u64 | length u32      -> OnHole
//   BLOCK_STATUS (5): context u32 | (length u32, flags u32)*  -> OnExtent per descriptor
//   NONE (0):         no payload
//   ERROR (2^15+1):   error u32 | msg length u16 | msg   -> OnError
//   ERROR_OFFSET (2^15+2): as ERROR, then offset u64     -> OnError
//   other error types (bit 15): as ERROR; other types: skipped (the spec lets clients
//   ignore unknown informational chunks)
// A simple reply, or a chunk with NBD_REPLY_FLAG_DONE, ends its request: OnDone.
//
// Memory is bounded: data streams through; only an error chunk's payload (at most
// 6 + 65535 + 8 bytes) is collected. A reply that breaks framing (bad magic, a chunk
// length that does not fit its type, a simple reply for an unknown cookie) puts the
// reader in a failed state: Consume returns the error and consumes nothing more.
//
// Not thread-safe; one per connection.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "util/status.h"

namespace portal::nbd {

class ReplyReader {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // A successful simple reply for `cookie` arrived: how many data bytes follow it (the
    // READ's length; 0 for other commands). An error if `cookie` is not in flight.
    virtual Result<uint32_t> SimpleReplyDataLength(uint64_t cookie) = 0;
    // READ data. Simple replies: `offset` counts from the start of the request's data
    // (absolute = false). OFFSET_DATA chunks: a device offset (absolute = true).
    virtual void OnData(uint64_t cookie, bool absolute, uint64_t offset,
                        std::span<const uint8_t> bytes) = 0;
    virtual void OnHole(uint64_t cookie, uint64_t offset, uint32_t length) = 0;
    virtual void OnExtent(uint64_t cookie, uint32_t context_id, uint32_t length,
                          uint32_t flags) = 0;
    // A simple reply with an error, or an error chunk (there may be several per request).
    virtual void OnError(uint64_t cookie, uint32_t error, std::string_view message) = 0;
    // The request's last reply has been read.
    virtual void OnDone(uint64_t cookie) = 0;
  };

  // `structured`: structured replies were negotiated (chunks are a protocol error
  // otherwise).
  ReplyReader(Handler& handler, bool structured) : handler_(handler), structured_(structured) {}

  // Consumes what it can of `in` (all of it unless an error stops it). Returns the bytes
  // consumed, or the framing error.
  Result<size_t> Consume(std::span<const uint8_t> in);

  // Between replies (no partial header or payload pending).
  bool idle() const { return state_ == State::kHeader && have_ == 0; }
  const Status& error() const { return error_; }

 private:
  enum class State {
    kHeader,       // collecting a reply or chunk header
    kSimpleData,   // READ data of a simple reply
    kChunkFixed,   // collecting a fixed-size part of a chunk payload into small_
    kChunkData,    // OFFSET_DATA data
    kExtents,      // BLOCK_STATUS descriptors
    kSkip,         // an ignored chunk payload
    kFailed,
  };

  Status Fail(std::string message);
  Status OnHeader();
  Status OnFixed();
  void EndChunk();

  Handler& handler_;
  const bool structured_;
  State state_ = State::kHeader;
  Status error_;
  // Header or fixed-size payload part being collected.
  uint8_t small_[6 + 65535 + 8];
  size_t have_ = 0;
  size_t need_ = 0;
  // The current reply.
  uint64_t cookie_ = 0;
  uint16_t chunk_flags_ = 0;
  uint16_t chunk_type_ = 0;
  uint64_t left_ = 0;       // payload bytes still to come
  uint64_t data_pos_ = 0;   // next data offset (absolute or relative)
  bool data_absolute_ = false;
  uint32_t context_id_ = 0;
};

}  // namespace portal::nbd
