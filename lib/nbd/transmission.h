// Transmission phase codec, sans-io: request headers in, validation verdicts and reply
// bytes out. Shared by the server session, the client and trace-record.
//
// Request (28 bytes):  magic u32 | flags u16 | type u16 | cookie u64 | offset u64 | len u32
// Simple reply (16):   magic u32 | error u32 | cookie u64 | [READ data]
// Structured chunk:    magic u32 | flags u16 | type u16 | cookie u64 | len u32 | payload
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "device/block_device.h"
#include "nbd/handshake.h"
#include "nbd/protocol.h"
#include "util/status.h"

namespace portal::nbd {

struct RequestHeader {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Decodes kRequestHeaderSize bytes. False if the magic is wrong (the stream is out of
// frame and the connection must end).
bool DecodeRequestHeader(const uint8_t* p, RequestHeader* h);
void EncodeRequestHeader(const RequestHeader& h, uint8_t* p);

// 0 if the request may go to the device, else the NBD error to answer with. Covers
// unknown types and flags, flags not valid for the command or not negotiated, writes to
// read-only exports, payload limits, bounds and BLOCK_STATUS without a context.
uint32_t ValidateRequest(const RequestHeader& h, const Negotiated& n);

// The one mapping from Status to NBD error numbers.
uint32_t NbdErrorFromStatus(const Status& s);
// And back, for the client: an error a server answered with (0 is OK).
Status StatusFromNbdError(uint32_t error, std::string_view message);

// Names for logs and traces: "READ", "WRITE", ...; "CMD(9)" for unknown types.
std::string CommandName(uint16_t type);

void EncodeSimpleReplyHeader(uint8_t* p, uint32_t error, uint64_t cookie);
void EncodeStructuredHeader(uint8_t* p, uint16_t flags, uint16_t type, uint64_t cookie,
                            uint32_t length);
void AppendSimpleReply(std::string* out, uint32_t error, uint64_t cookie);
// NBD_REPLY_TYPE_ERROR with NBD_REPLY_FLAG_DONE; the message is cut to the spec's limit.
void AppendErrorChunk(std::string* out, uint64_t cookie, uint32_t error,
                      std::string_view message);
// NBD_REPLY_TYPE_BLOCK_STATUS with NBD_REPLY_FLAG_DONE.
void AppendBlockStatusChunk(std::string* out, uint64_t cookie, uint32_t context_id,
                            const std::vector<device::StatusExtent>& extents);

// base:allocation flags of an extent.
inline uint32_t AllocationFlags(const device::StatusExtent& e) {
  return (e.hole ? NBD_STATE_HOLE : 0) | (e.zero ? NBD_STATE_ZERO : 0);
}

}  // namespace portal::nbd
