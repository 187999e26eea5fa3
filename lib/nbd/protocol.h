// NBD wire constants, with the names and numbers of the specification
// (NetworkBlockDevice/nbd doc/proto.md; a copy is in ../shared/reference/nbd/proto.md).
// All integers on the wire are big-endian.
#pragma once

#include <cstdint>

namespace portal::nbd {

// --- Handshake ---
constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;       // "NBDMAGIC"
constexpr uint64_t kIHaveOpt = 0x49484156454F5054ULL;       // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ULL;

// Handshake flags (server, 16 bits).
constexpr uint16_t NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
constexpr uint16_t NBD_FLAG_NO_ZEROES = 1 << 1;
// Client flags (32 bits).
constexpr uint32_t NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
constexpr uint32_t NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (16 bits).
constexpr uint16_t NBD_FLAG_HAS_FLAGS = 1 << 0;
constexpr uint16_t NBD_FLAG_READ_ONLY = 1 << 1;
constexpr uint16_t NBD_FLAG_SEND_FLUSH = 1 << 2;
constexpr uint16_t NBD_FLAG_SEND_FUA = 1 << 3;
constexpr uint16_t NBD_FLAG_ROTATIONAL = 1 << 4;
constexpr uint16_t NBD_FLAG_SEND_TRIM = 1 << 5;
constexpr uint16_t NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
constexpr uint16_t NBD_FLAG_SEND_DF = 1 << 7;
constexpr uint16_t NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
constexpr uint16_t NBD_FLAG_SEND_RESIZE = 1 << 9;
constexpr uint16_t NBD_FLAG_SEND_CACHE = 1 << 10;
constexpr uint16_t NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
constexpr uint32_t NBD_OPT_EXPORT_NAME = 1;
constexpr uint32_t NBD_OPT_ABORT = 2;
constexpr uint32_t NBD_OPT_LIST = 3;
constexpr uint32_t NBD_OPT_PEEK_EXPORT = 4;
constexpr uint32_t NBD_OPT_STARTTLS = 5;
constexpr uint32_t NBD_OPT_INFO = 6;
constexpr uint32_t NBD_OPT_GO = 7;
constexpr uint32_t NBD_OPT_STRUCTURED_REPLY = 8;
constexpr uint32_t NBD_OPT_LIST_META_CONTEXT = 9;
constexpr uint32_t NBD_OPT_SET_META_CONTEXT = 10;
constexpr uint32_t NBD_OPT_EXTENDED_HEADERS = 11;

// Option replies.
constexpr uint32_t NBD_REP_ACK = 1;
constexpr uint32_t NBD_REP_SERVER = 2;
constexpr uint32_t NBD_REP_INFO = 3;
constexpr uint32_t NBD_REP_META_CONTEXT = 4;
constexpr uint32_t NBD_REP_FLAG_ERROR = 1u << 31;
constexpr uint32_t NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1;
constexpr uint32_t NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2;
constexpr uint32_t NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3;
constexpr uint32_t NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR | 4;
constexpr uint32_t NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR | 5;
constexpr uint32_t NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6;
constexpr uint32_t NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR | 7;
constexpr uint32_t NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR | 8;
constexpr uint32_t NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9;

// Info types (NBD_REP_INFO).
constexpr uint16_t NBD_INFO_EXPORT = 0;
constexpr uint16_t NBD_INFO_NAME = 1;
constexpr uint16_t NBD_INFO_DESCRIPTION = 2;
constexpr uint16_t NBD_INFO_BLOCK_SIZE = 3;

// --- Transmission ---
constexpr uint32_t NBD_REQUEST_MAGIC = 0x25609513;
constexpr uint32_t NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
constexpr uint32_t NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

constexpr uint16_t NBD_CMD_READ = 0;
constexpr uint16_t NBD_CMD_WRITE = 1;
constexpr uint16_t NBD_CMD_DISC = 2;
constexpr uint16_t NBD_CMD_FLUSH = 3;
constexpr uint16_t NBD_CMD_TRIM = 4;
constexpr uint16_t NBD_CMD_CACHE = 5;
constexpr uint16_t NBD_CMD_WRITE_ZEROES = 6;
constexpr uint16_t NBD_CMD_BLOCK_STATUS = 7;
constexpr uint16_t NBD_CMD_RESIZE = 8;

constexpr uint16_t NBD_CMD_FLAG_FUA = 1 << 0;
constexpr uint16_t NBD_CMD_FLAG_NO_HOLE = 1 << 1;
constexpr uint16_t NBD_CMD_FLAG_DF = 1 << 2;
constexpr uint16_t NBD_CMD_FLAG_REQ_ONE = 1 << 3;
constexpr uint16_t NBD_CMD_FLAG_FAST_ZERO = 1 << 4;
constexpr uint16_t NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5;

constexpr uint16_t NBD_REPLY_FLAG_DONE = 1 << 0;

constexpr uint16_t NBD_REPLY_TYPE_NONE = 0;
constexpr uint16_t NBD_REPLY_TYPE_OFFSET_DATA = 1;
constexpr uint16_t NBD_REPLY_TYPE_OFFSET_HOLE = 2;
constexpr uint16_t NBD_REPLY_TYPE_BLOCK_STATUS = 5;
constexpr uint16_t NBD_REPLY_TYPE_ERROR = (1 << 15) | 1;
constexpr uint16_t NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2;

// base:allocation flags.
constexpr uint32_t NBD_STATE_HOLE = 1 << 0;
constexpr uint32_t NBD_STATE_ZERO = 1 << 1;

// Errors.
constexpr uint32_t NBD_EPERM = 1;
constexpr uint32_t NBD_EIO = 5;
constexpr uint32_t NBD_ENOMEM = 12;
constexpr uint32_t NBD_EINVAL = 22;
constexpr uint32_t NBD_ENOSPC = 28;
constexpr uint32_t NBD_EOVERFLOW = 75;
constexpr uint32_t NBD_ENOTSUP = 95;
constexpr uint32_t NBD_ESHUTDOWN = 108;

// Sizes.
constexpr size_t kRequestHeaderSize = 28;
constexpr size_t kSimpleReplyHeaderSize = 16;
constexpr size_t kStructuredReplyHeaderSize = 20;
constexpr size_t kOptionHeaderSize = 16;     // magic + option + length
constexpr size_t kOptionReplyHeaderSize = 20;  // magic + option + type + length
constexpr uint32_t kMaxStringLength = 4096;    // the spec's bound on names and messages

constexpr const char* kBaseAllocation = "base:allocation";

}  // namespace portal::nbd
