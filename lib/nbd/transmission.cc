#include "nbd/transmission.h"

#include <fmt/format.h>

#include "util/coding.h"

namespace portal::nbd {

bool DecodeRequestHeader(const uint8_t* p, RequestHeader* h) {
  if (LoadBE32(p) != NBD_REQUEST_MAGIC) return false;
  h->flags = LoadBE16(p + 4);
  h->type = LoadBE16(p + 6);
  h->cookie = LoadBE64(p + 8);
  h->offset = LoadBE64(p + 16);
  h->length = LoadBE32(p + 24);
  return true;
}

void EncodeRequestHeader(const RequestHeader& h, uint8_t* p) {
  StoreBE32(p, NBD_REQUEST_MAGIC);
  StoreBE16(p + 4, h.flags);
  StoreBE16(p + 6, h.type);
  StoreBE64(p + 8, h.cookie);
  StoreBE64(p + 16, h.offset);
  StoreBE32(p + 24, h.length);
}

uint32_t ValidateRequest(const RequestHeader& h, const Negotiated& n) {
  const ExportInfo& info = n.export_->info;
  uint16_t allowed = NBD_CMD_FLAG_FUA;  // valid on every command (clients set it freely)
  bool writes = false;
  bool payload = false;
  switch (h.type) {
    case NBD_CMD_READ:
      if (n.transmission_flags & NBD_FLAG_SEND_DF) allowed |= NBD_CMD_FLAG_DF;
      payload = true;
      break;
    case NBD_CMD_WRITE:
      writes = payload = true;
      break;
    case NBD_CMD_FLUSH:
      if (h.offset != 0 || h.length != 0) return NBD_EINVAL;
      break;
    case NBD_CMD_TRIM:
      writes = true;
      break;
    case NBD_CMD_WRITE_ZEROES:
      allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
      writes = true;
      break;
    case NBD_CMD_BLOCK_STATUS:
      allowed |= NBD_CMD_FLAG_REQ_ONE;
      break;
    case NBD_CMD_CACHE:
      break;
    default:
      return NBD_EINVAL;  // unknown command (DISC is handled before validation)
  }
  if (h.flags & ~allowed) return NBD_EINVAL;
  if (writes && info.read_only) return NBD_EPERM;
  if (payload && h.length > info.max_payload) {
    // Reads that big could be split, but refusing up front is the documented option.
    return (h.type == NBD_CMD_READ && n.structured_replies) ? NBD_EOVERFLOW : NBD_EINVAL;
  }
  if (h.type != NBD_CMD_FLUSH &&
      (h.offset > info.size_bytes || h.length > info.size_bytes - h.offset)) {
    return (h.type == NBD_CMD_WRITE || h.type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC
                                                                        : NBD_EINVAL;
  }
  if (h.type == NBD_CMD_BLOCK_STATUS && (!n.base_allocation || h.length == 0)) {
    return NBD_EINVAL;
  }
  return 0;
}

uint32_t NbdErrorFromStatus(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kInvalidArgument: return NBD_EINVAL;
    case Status::Code::kNoSpace: return NBD_ENOSPC;
    case Status::Code::kPermissionDenied: return NBD_EPERM;
    case Status::Code::kNotSupported: return NBD_ENOTSUP;
    case Status::Code::kShutdown: return NBD_ESHUTDOWN;
    default: return NBD_EIO;  // storage failures, corruption, fencing
  }
}

Status StatusFromNbdError(uint32_t error, std::string_view message) {
  std::string m = fmt::format("NBD error {}{}{}", error, message.empty() ? "" : ": ", message);
  switch (error) {
    case 0: return Status::Ok();
    case NBD_EINVAL: return Status::InvalidArgument(std::move(m));
    case NBD_ENOSPC: return Status::NoSpace(std::move(m));
    case NBD_EPERM: return Status::PermissionDenied(std::move(m));
    case NBD_ENOTSUP: return Status::NotSupported(std::move(m));
    case NBD_ESHUTDOWN: return Status::Shutdown(std::move(m));
    default: return Status::IOError(std::move(m));
  }
}

std::string CommandName(uint16_t type) {
  switch (type) {
    case NBD_CMD_READ: return "READ";
    case NBD_CMD_WRITE: return "WRITE";
    case NBD_CMD_DISC: return "DISC";
    case NBD_CMD_FLUSH: return "FLUSH";
    case NBD_CMD_TRIM: return "TRIM";
    case NBD_CMD_CACHE: return "CACHE";
    case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
    default: return fmt::format("CMD({})", type);
  }
}

void EncodeSimpleReplyHeader(uint8_t* p, uint32_t error, uint64_t cookie) {
  StoreBE32(p, NBD_SIMPLE_REPLY_MAGIC);
  StoreBE32(p + 4, error);
  StoreBE64(p + 8, cookie);
}

void EncodeStructuredHeader(uint8_t* p, uint16_t flags, uint16_t type, uint64_t cookie,
                            uint32_t length) {
  StoreBE32(p, NBD_STRUCTURED_REPLY_MAGIC);
  StoreBE16(p + 4, flags);
  StoreBE16(p + 6, type);
  StoreBE64(p + 8, cookie);
  StoreBE32(p + 16, length);
}

void AppendSimpleReply(std::string* out, uint32_t error, uint64_t cookie) {
  uint8_t b[kSimpleReplyHeaderSize];
  EncodeSimpleReplyHeader(b, error, cookie);
  out->append(reinterpret_cast<char*>(b), sizeof b);
}

void AppendErrorChunk(std::string* out, uint64_t cookie, uint32_t error,
                      std::string_view message) {
  if (message.size() > kMaxStringLength) message = message.substr(0, kMaxStringLength);
  uint8_t b[kStructuredReplyHeaderSize];
  EncodeStructuredHeader(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie,
                         static_cast<uint32_t>(6 + message.size()));
  out->append(reinterpret_cast<char*>(b), sizeof b);
  PutBE32(out, error);
  PutBE16(out, static_cast<uint16_t>(message.size()));
  out->append(message);
}

void AppendBlockStatusChunk(std::string* out, uint64_t cookie, uint32_t context_id,
                            const std::vector<device::StatusExtent>& extents) {
  uint8_t b[kStructuredReplyHeaderSize];
  EncodeStructuredHeader(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
                         static_cast<uint32_t>(4 + 8 * extents.size()));
  out->append(reinterpret_cast<char*>(b), sizeof b);
  PutBE32(out, context_id);
  for (const auto& e : extents) {
    PutBE32(out, static_cast<uint32_t>(e.length));
    PutBE32(out, AllocationFlags(e));
  }
}

}  // namespace portal::nbd
