#include "nbd/handshake.h"

#include <fmt/format.h>

#include "nbd/protocol.h"
#include "util/assert.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

constexpr uint32_t kBaseAllocationId = 1;

// Parses the shared layout of LIST_META_CONTEXT / SET_META_CONTEXT:
//   u32 name length, name, u32 query count, then per query: u32 length, bytes.
bool ParseMetaRequest(std::string_view data, std::string_view* name,
                      std::vector<std::string_view>* queries) {
  ByteReader r(data);
  uint32_t name_len, count;
  if (!r.GetBE32(&name_len) || !r.GetBytes(name_len, name) || !r.GetBE32(&count)) return false;
  if (count > r.remaining() / 4) return false;  // each query takes at least 4 bytes
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len;
    std::string_view q;
    if (!r.GetBE32(&len) || !r.GetBytes(len, &q)) return false;
    queries->push_back(q);
  }
  return r.empty();
}

std::string MetaContextPayload(uint32_t id, std::string_view name) {
  std::string p;
  PutBE32(&p, id);
  p.append(name);
  return p;
}

}  // namespace

Result<TlsMode> ParseTlsMode(std::string_view name) {
  if (name == "off") return TlsMode::kOff;
  if (name == "on") return TlsMode::kOn;
  if (name == "require") return TlsMode::kRequire;
  return Status::InvalidArgument(
      fmt::format("must be \"off\", \"on\" or \"require\", got \"{}\"", name));
}

std::string_view TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff:
      return "off";
    case TlsMode::kOn:
      return "on";
    case TlsMode::kRequire:
      return "require";
  }
  return "?";
}

void AppendOptionReply(std::string* out, uint32_t option, uint32_t type,
                       std::string_view payload) {
  PutBE64(out, kOptReplyMagic);
  PutBE32(out, option);
  PutBE32(out, type);
  PutBE32(out, static_cast<uint32_t>(payload.size()));
  out->append(payload);
}

uint16_t Handshake::TransmissionFlags(const ExportInfo& info, bool structured) {
  uint16_t flags =
      NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
  if (info.read_only) {
    flags |= NBD_FLAG_READ_ONLY;
  } else {
    flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
             NBD_FLAG_SEND_FAST_ZERO;
  }
  if (structured) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

void Handshake::Begin(std::string* out) {
  PutBE64(out, kNbdMagic);
  PutBE64(out, kIHaveOpt);
  PutBE16(out, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

void Handshake::Fail(std::string why) {
  state_ = State::kHardClose;
  error_ = std::move(why);
}

size_t Handshake::Consume(std::span<const uint8_t> in, std::string* out) {
  size_t used = 0;
  while (state_ == State::kNegotiating) {
    std::span<const uint8_t> rest = in.subspan(used);
    if (!got_client_flags_) {
      if (rest.size() < 4) break;
      uint32_t flags = LoadBE32(rest.data());
      used += 4;
      if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        Fail(fmt::format("unknown client flags {:#x}", flags));
        break;
      }
      no_zeroes_ = flags & NBD_FLAG_C_NO_ZEROES;
      fixed_newstyle_ = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
      got_client_flags_ = true;
      if (tls_mode_ == TlsMode::kRequire && !(flags & NBD_FLAG_C_FIXED_NEWSTYLE)) {
        Fail("TLS is required and the client does not speak fixed newstyle");
        break;
      }
      continue;
    }
    if (discarding_) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(rest.size(), discard_left_));
      used += n;
      discard_left_ -= n;
      if (discard_left_ > 0) break;
      discarding_ = false;
      if (TlsRequired(discard_option_)) {
        AppendOptionReply(out, discard_option_, NBD_REP_ERR_TLS_REQD, "TLS is required");
      } else {
        AppendOptionReply(out, discard_option_, NBD_REP_ERR_TOO_BIG, "option data too large");
      }
      continue;
    }
    if (rest.size() < kOptionHeaderSize) break;
    uint64_t magic = LoadBE64(rest.data());
    uint32_t option = LoadBE32(rest.data() + 8);
    uint32_t length = LoadBE32(rest.data() + 12);
    if (magic != kIHaveOpt) {
      Fail(fmt::format("bad option magic {:#x}", magic));
      break;
    }
    if (++options_seen_ > kMaxOptions) {
      Fail("too many options");
      break;
    }
    if (length > kMaxOptionLength) {
      if (option == NBD_OPT_EXPORT_NAME) {  // cannot be answered with an error
        Fail("export name too long");
        break;
      }
      used += kOptionHeaderSize;
      discarding_ = true;
      discard_option_ = option;
      discard_left_ = length;
      continue;
    }
    if (rest.size() < kOptionHeaderSize + length) break;
    std::string_view data(reinterpret_cast<const char*>(rest.data()) + kOptionHeaderSize,
                          length);
    used += kOptionHeaderSize + length;
    HandleOption(option, data, out);
  }
  return used;
}

void Handshake::HandleOption(uint32_t option, std::string_view data, std::string* out) {
  if (shutting_down_ && option != NBD_OPT_ABORT) {
    if (option == NBD_OPT_EXPORT_NAME) {
      Fail("server shutting down");
    } else {
      AppendOptionReply(out, option, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
    }
    return;
  }
  if (TlsRequired(option)) {
    if (option == NBD_OPT_EXPORT_NAME) {
      Fail("EXPORT_NAME before STARTTLS, and TLS is required");
    } else {
      AppendOptionReply(out, option, NBD_REP_ERR_TLS_REQD, "TLS is required");
    }
    return;
  }
  switch (option) {
    case NBD_OPT_STARTTLS:
      // NOTLS, by configuration or because the client is not fixed newstyle (proto.md:
      // TLS needs both sides' fixed newstyle flags): unsupported, below.
      if (tls_mode_ == TlsMode::kOff || !fixed_newstyle_) break;
      if (!data.empty()) {
        AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "option takes no data");
      } else if (tls_) {
        AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "TLS is already on");
      } else {
        AppendOptionReply(out, option, NBD_REP_ACK, "");
        state_ = State::kStartTls;
      }
      return;
    case NBD_OPT_EXPORT_NAME:
      HandleExportName(data, out);
      return;
    case NBD_OPT_ABORT:
      AppendOptionReply(out, option, NBD_REP_ACK, "");
      state_ = State::kAborted;
      return;
    case NBD_OPT_LIST:
      HandleList(data, out);
      return;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      HandleInfoOrGo(option, data, out);
      return;
    case NBD_OPT_STRUCTURED_REPLY:
      if (!data.empty()) {
        AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "option takes no data");
      } else if (structured_) {
        AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "already negotiated");
      } else {
        structured_ = true;
        AppendOptionReply(out, option, NBD_REP_ACK, "");
      }
      return;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      HandleMetaContext(option, data, out);
      return;
    default:
      break;
  }
  AppendOptionReply(out, option, NBD_REP_ERR_UNSUP,
                    fmt::format("option {} is not supported", option));
}

bool Handshake::TlsRequired(uint32_t option) const {
  return tls_mode_ == TlsMode::kRequire && !tls_ && option != NBD_OPT_STARTTLS &&
         option != NBD_OPT_ABORT;
}

void Handshake::TlsStarted() {
  PORTAL_ASSERT(state_ == State::kStartTls, "TlsStarted without STARTTLS");
  tls_ = true;
  state_ = State::kNegotiating;
  // proto.md: no negotiation state issued before STARTTLS survives it.
  structured_ = false;
  meta_set_ = false;
  meta_export_.clear();
  meta_base_allocation_ = false;
}

void Handshake::HandleExportName(std::string_view name, std::string* out) {
  auto opened = catalog_.Open(name);
  if (!opened.ok()) {
    Fail(opened.status().ToString());  // EXPORT_NAME has no error reply
    return;
  }
  negotiated_.export_ = std::move(*opened);
  const ExportInfo& info = negotiated_.export_->info;
  negotiated_.structured_replies = structured_;
  negotiated_.no_zeroes = no_zeroes_;
  negotiated_.transmission_flags = TransmissionFlags(info, structured_);
  negotiated_.base_allocation = meta_set_ && meta_base_allocation_ && meta_export_ == info.name;
  negotiated_.base_allocation_id = kBaseAllocationId;
  PutBE64(out, info.size_bytes);
  PutBE16(out, negotiated_.transmission_flags);
  if (!no_zeroes_) out->append(124, '\0');
  state_ = State::kTransmission;
}

void Handshake::HandleInfoOrGo(uint32_t option, std::string_view data, std::string* out) {
  ByteReader r(data);
  uint32_t name_len;
  std::string_view name;
  uint16_t count;
  if (data.size() < 6 || !r.GetBE32(&name_len) || name_len > data.size() - 6 ||
      !r.GetBytes(name_len, &name) || !r.GetBE16(&count) || r.remaining() != 2u * count) {
    AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "malformed INFO/GO request");
    return;
  }
  bool want_name = false, want_description = false;
  for (uint16_t i = 0; i < count; ++i) {
    uint16_t type;
    (void)r.GetBE16(&type);
    if (type == NBD_INFO_NAME) want_name = true;
    if (type == NBD_INFO_DESCRIPTION) want_description = true;
  }

  std::shared_ptr<OpenExport> opened;
  ExportInfo info;
  if (option == NBD_OPT_GO) {
    auto o = catalog_.Open(name);
    if (!o.ok()) {
      AppendOptionReply(out, option, NBD_REP_ERR_UNKNOWN, o.status().message());
      return;
    }
    opened = std::move(*o);
    info = opened->info;
  } else {
    auto i = catalog_.Lookup(name);
    if (!i.ok()) {
      AppendOptionReply(out, option, NBD_REP_ERR_UNKNOWN, i.status().message());
      return;
    }
    info = std::move(*i);
  }

  uint16_t flags = TransmissionFlags(info, structured_);
  std::string p;
  PutBE16(&p, NBD_INFO_EXPORT);
  PutBE64(&p, info.size_bytes);
  PutBE16(&p, flags);
  AppendOptionReply(out, option, NBD_REP_INFO, p);
  if (want_name) {
    p.clear();
    PutBE16(&p, NBD_INFO_NAME);
    p.append(info.name);
    AppendOptionReply(out, option, NBD_REP_INFO, p);
  }
  if (want_description && !info.description.empty()) {
    p.clear();
    PutBE16(&p, NBD_INFO_DESCRIPTION);
    p.append(info.description);
    AppendOptionReply(out, option, NBD_REP_INFO, p);
  }
  // Always sent: our constraints are the defaults, and telling costs nothing.
  p.clear();
  PutBE16(&p, NBD_INFO_BLOCK_SIZE);
  PutBE32(&p, info.min_block_size);
  PutBE32(&p, info.preferred_block_size);
  PutBE32(&p, info.max_payload);
  AppendOptionReply(out, option, NBD_REP_INFO, p);
  AppendOptionReply(out, option, NBD_REP_ACK, "");

  if (option == NBD_OPT_GO) {
    negotiated_.export_ = std::move(opened);
    negotiated_.structured_replies = structured_;
    negotiated_.no_zeroes = no_zeroes_;
    negotiated_.transmission_flags = flags;
    negotiated_.base_allocation =
        meta_set_ && meta_base_allocation_ && meta_export_ == info.name;
    negotiated_.base_allocation_id = kBaseAllocationId;
    state_ = State::kTransmission;
  }
}

void Handshake::HandleList(std::string_view data, std::string* out) {
  if (!data.empty()) {
    AppendOptionReply(out, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "LIST takes no data");
    return;
  }
  for (const ExportInfo& info : catalog_.List()) {
    std::string p;
    PutBE32(&p, static_cast<uint32_t>(info.name.size()));
    p.append(info.name);
    p.append(info.description);  // after the name: a human-readable description
    AppendOptionReply(out, NBD_OPT_LIST, NBD_REP_SERVER, p);
  }
  AppendOptionReply(out, NBD_OPT_LIST, NBD_REP_ACK, "");
}

void Handshake::HandleMetaContext(uint32_t option, std::string_view data, std::string* out) {
  const bool set = option == NBD_OPT_SET_META_CONTEXT;
  if (set) {  // replaces the previous selection even when it fails
    meta_set_ = false;
    meta_base_allocation_ = false;
    meta_export_.clear();
  }
  if (!structured_) {
    AppendOptionReply(out, option, NBD_REP_ERR_INVALID,
                      "negotiate structured replies first");
    return;
  }
  std::string_view name;
  std::vector<std::string_view> queries;
  if (!ParseMetaRequest(data, &name, &queries)) {
    AppendOptionReply(out, option, NBD_REP_ERR_INVALID, "malformed meta context request");
    return;
  }
  auto info = catalog_.Lookup(name);
  if (!info.ok()) {
    AppendOptionReply(out, option, NBD_REP_ERR_UNKNOWN, info.status().message());
    return;
  }
  bool match = false;
  if (set) {
    for (std::string_view q : queries) match |= (q == kBaseAllocation);
  } else {
    match = queries.empty();
    for (std::string_view q : queries) match |= (q == "base:" || q == kBaseAllocation);
  }
  if (match) {
    AppendOptionReply(out, option, NBD_REP_META_CONTEXT,
                      MetaContextPayload(set ? kBaseAllocationId : 0, kBaseAllocation));
  }
  AppendOptionReply(out, option, NBD_REP_ACK, "");
  if (set) {
    meta_set_ = true;
    meta_base_allocation_ = match;
    meta_export_ = info->name;
  }
}

}  // namespace portal::nbd
