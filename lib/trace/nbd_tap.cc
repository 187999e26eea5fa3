#include "trace/nbd_tap.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nbd/handshake.h"
#include "nbd/protocol.h"
#include "nbd/transmission.h"
#include "util/assert.h"
#include "util/coding.h"

namespace portal::trace {
namespace {

constexpr uint64_t kOldstyleMagic = 0x00420281861253ULL;
constexpr size_t kOldstyleGreetingSize = 8 + 8 + 8 + 4 + 124;
constexpr size_t kNewstyleGreetingSize = 8 + 8 + 2;
constexpr size_t kInfoExportSize = 2 + 8 + 2;  // type, size, transmission flags

}  // namespace

std::optional<OpType> TraceTypeFromNbd(uint16_t nbd_type) {
  switch (nbd_type) {
    case nbd::NBD_CMD_READ: return OpType::kRead;
    case nbd::NBD_CMD_WRITE: return OpType::kWrite;
    case nbd::NBD_CMD_FLUSH: return OpType::kFlush;
    case nbd::NBD_CMD_TRIM: return OpType::kTrim;
    case nbd::NBD_CMD_CACHE: return OpType::kCache;
    case nbd::NBD_CMD_WRITE_ZEROES: return OpType::kWriteZeroes;
    case nbd::NBD_CMD_BLOCK_STATUS: return OpType::kBlockStatus;
    default: return std::nullopt;
  }
}

NbdTap::NbdTap(Sink& sink, Options options) : sink_(sink), options_(options) {}
NbdTap::~NbdTap() = default;

void NbdTap::GoBlind(std::string why) {
  if (server_ == ServerState::kBlind) return;
  blind_reason_ = std::move(why);
  server_ = ServerState::kBlind;
  // An option header held back from the server is released by the next FromClient.
  if (client_ != ClientState::kOption) chave_ = 0;
  client_ = ClientState::kPassThrough;
  pending_.clear();
}

// --- client -> server ---

void NbdTap::CloseWith(std::string why) {
  if (close_reason_.empty()) close_reason_ = std::move(why);
  client_ = ClientState::kHold;
}

bool NbdTap::TlsRequired(uint32_t option) const {
  return options_.client_tls == nbd::TlsMode::kRequire && !client_tls_on_ &&
         option != nbd::NBD_OPT_STARTTLS && option != nbd::NBD_OPT_ABORT;
}

void NbdTap::AnswerRefused(std::string* to_client) {
  client_ = ClientState::kOption;
  const uint32_t option = discard_option_;
  if (option == nbd::NBD_OPT_STARTTLS && options_.client_tls != nbd::TlsMode::kOff) {
    if (discard_length_ != 0) {
      nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_INVALID, "option takes no data");
    } else if (forwarded_options_ > 0 && !client_tls_on_) {
      // The client would forget what it negotiated (proto.md), the upstream would not:
      // refused rather than let the two disagree (libnbd and qemu send STARTTLS first).
      ++refused_options_;
      nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_POLICY,
                             "trace-record takes STARTTLS only as the first option");
    } else if (client_tls_on_) {
      nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_INVALID, "TLS is already on");
    } else {
      nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ACK, "");
      tls_step_ = TlsStep::kClient;
      client_ = ClientState::kHold;
    }
    return;
  }
  ++refused_options_;
  if (option == nbd::NBD_OPT_STARTTLS) {
    nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_POLICY,
                           "TLS is off in trace-record (--tls)");
  } else if (option == nbd::NBD_OPT_EXTENDED_HEADERS) {
    nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_UNSUP,
                           "trace-record does not parse extended headers");
  } else if (option == nbd::NBD_OPT_EXPORT_NAME) {
    CloseWith("EXPORT_NAME before STARTTLS, and TLS is required");
  } else {
    nbd::AppendOptionReply(to_client, option, nbd::NBD_REP_ERR_TLS_REQD, "TLS is required");
  }
}

void NbdTap::TlsStarted() {
  PORTAL_ASSERT(tls_step_ != TlsStep::kNone, "TlsStarted without a TLS step");
  if (tls_step_ == TlsStep::kClient) client_tls_on_ = true;
  internal_reply_ = false;
  tls_step_ = TlsStep::kNone;
  client_ = ClientState::kOption;
}

void NbdTap::ClientOption(uint32_t option, uint32_t length) {
  if (option == nbd::NBD_OPT_STARTTLS || option == nbd::NBD_OPT_EXTENDED_HEADERS ||
      TlsRequired(option)) {
    discard_option_ = option;
    discard_length_ = length;
    cleft_ = length;
    client_ = ClientState::kDiscard;
    return;
  }
  ++forwarded_options_;
  outstanding_option_ = option;
  cleft_ = length;
  client_ = length > 0 ? ClientState::kOptionData : ClientState::kWaitReply;
  server_ = option == nbd::NBD_OPT_EXPORT_NAME ? ServerState::kExportNameReply
                                               : ServerState::kOptionReply;
  shave_ = 0;
}

size_t NbdTap::FromClient(std::span<const uint8_t> in, uint64_t now_ns, std::string* to_server,
                          std::string* to_client) {
  size_t used = 0;
  auto forward = [&](size_t n) {
    to_server->append(reinterpret_cast<const char*>(in.data() + used), n);
    used += n;
  };
  // Collects into cbuf_ up to `want` bytes; forwards them too unless `hold`.
  auto collect = [&](size_t want, bool hold) {
    size_t n = std::min(want - chave_, in.size() - used);
    std::memcpy(cbuf_ + chave_, in.data() + used, n);
    chave_ += n;
    if (hold) {
      used += n;
    } else {
      forward(n);
    }
    return chave_ == want;
  };
  if (client_ == ClientState::kPassThrough && chave_ > 0) {  // held bytes of a blind tap
    to_server->append(reinterpret_cast<const char*>(cbuf_), chave_);
    chave_ = 0;
  }
  while (used < in.size()) {
    size_t rest = in.size() - used;
    switch (client_) {
      case ClientState::kWaitGreeting:
      case ClientState::kWaitReply:
      case ClientState::kHold:
        return used;
      case ClientState::kPassThrough:
        forward(rest);
        break;
      case ClientState::kFlags:
        if (collect(4, false)) {
          const uint32_t flags = LoadBE32(cbuf_);
          no_zeroes_ = flags & nbd::NBD_FLAG_C_NO_ZEROES;
          chave_ = 0;
          client_ = ClientState::kOption;
          const bool fixed = flags & nbd::NBD_FLAG_C_FIXED_NEWSTYLE;
          if (!fixed && options_.client_tls == nbd::TlsMode::kRequire) {
            CloseWith("TLS is required and the client does not speak fixed newstyle");
          } else if (options_.upstream_tls) {
            if (!fixed) {
              CloseWith("the client does not speak fixed newstyle: no STARTTLS upstream");
              break;
            }
            // Our own STARTTLS, before any option of the client's (held until TLS is up).
            uint8_t opt[nbd::kOptionHeaderSize];
            StoreBE64(opt, nbd::kIHaveOpt);
            StoreBE32(opt + 8, nbd::NBD_OPT_STARTTLS);
            StoreBE32(opt + 12, 0);
            to_server->append(reinterpret_cast<const char*>(opt), sizeof opt);
            outstanding_option_ = nbd::NBD_OPT_STARTTLS;
            internal_reply_ = true;
            client_ = ClientState::kWaitReply;
            server_ = ServerState::kOptionReply;
            shave_ = 0;
          }
        }
        break;
      case ClientState::kOption: {
        if (!collect(nbd::kOptionHeaderSize, true)) break;
        chave_ = 0;
        if (LoadBE64(cbuf_) != nbd::kIHaveOpt) {
          to_server->append(reinterpret_cast<const char*>(cbuf_), nbd::kOptionHeaderSize);
          GoBlind(fmt::format("bad option magic {:#x} from the client", LoadBE64(cbuf_)));
          break;
        }
        uint32_t option = LoadBE32(cbuf_ + 8);
        uint32_t length = LoadBE32(cbuf_ + 12);
        ClientOption(option, length);
        if (client_ != ClientState::kDiscard) {
          to_server->append(reinterpret_cast<const char*>(cbuf_), nbd::kOptionHeaderSize);
        } else if (cleft_ == 0) {
          AnswerRefused(to_client);
        }
        break;
      }
      case ClientState::kOptionData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(cleft_, rest));
        forward(n);
        cleft_ -= n;
        if (cleft_ == 0) client_ = ClientState::kWaitReply;
        break;
      }
      case ClientState::kDiscard: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(cleft_, rest));
        used += n;
        cleft_ -= n;
        if (cleft_ == 0) AnswerRefused(to_client);
        break;
      }
      case ClientState::kRequest: {
        if (pending_.size() >= options_.max_inflight && chave_ == 0) return used;
        if (!collect(nbd::kRequestHeaderSize, false)) break;
        chave_ = 0;
        nbd::RequestHeader h;
        if (!nbd::DecodeRequestHeader(cbuf_, &h)) {
          GoBlind(fmt::format("bad request magic {:#x} from the client", LoadBE32(cbuf_)));
          break;
        }
        if (h.type == nbd::NBD_CMD_DISC) {
          client_ = ClientState::kPassThrough;
          break;
        }
        if (pending_.contains(h.cookie)) {
          GoBlind(fmt::format("cookie {:#x} reused while in flight", h.cookie));
          break;
        }
        pending_.emplace(h.cookie, Pending{h.type, h.flags, h.offset, h.length, now_ns});
        if (h.type == nbd::NBD_CMD_WRITE && h.length > 0) {
          cleft_ = h.length;
          client_ = ClientState::kWriteData;
        }
        break;
      }
      case ClientState::kWriteData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(cleft_, rest));
        forward(n);
        cleft_ -= n;
        if (cleft_ == 0) client_ = ClientState::kRequest;
        break;
      }
    }
  }
  return used;
}

// --- server -> client ---

void NbdTap::ServerGreeting() {
  if (LoadBE64(sbuf_) != nbd::kNbdMagic) {
    GoBlind(fmt::format("bad greeting magic {:#x} from the server", LoadBE64(sbuf_)));
    return;
  }
  if (LoadBE64(sbuf_ + 8) == nbd::kIHaveOpt) {
    server_flags_ = LoadBE16(sbuf_ + 16);
    if (options_.upstream_tls && !(server_flags_ & nbd::NBD_FLAG_FIXED_NEWSTYLE)) {
      CloseWith("the upstream does not speak fixed newstyle: no STARTTLS");
      return;
    }
    server_ = ServerState::kOptionReply;
    client_ = ClientState::kFlags;
  } else {  // oldstyle: size u64, flags u32 (transmission flags in the low 16 bits)
    if (options_.upstream_tls) {
      CloseWith("the upstream speaks oldstyle: no STARTTLS");
      return;
    }
    client_ = ClientState::kRequest;
    BeginTransmission(LoadBE64(sbuf_ + 16), static_cast<uint16_t>(LoadBE32(sbuf_ + 24)));
  }
  shave_ = 0;
}

void NbdTap::BeginTransmission(uint64_t size, uint16_t flags) {
  export_size_ = size;
  server_ = ServerState::kTransmission;
  client_ = ClientState::kRequest;
  chave_ = 0;
  nbd::ReplyReader::Handler& handler = *this;
  replies_ = std::make_unique<nbd::ReplyReader>(handler, structured_);
  sink_.OnExport(size, flags);
}

void NbdTap::OptionReplyDone() {
  server_ = ServerState::kOptionReply;
  if (reply_type_ == nbd::NBD_REP_INFO && shave_ >= kInfoExportSize &&
      LoadBE16(sbuf_) == nbd::NBD_INFO_EXPORT) {
    info_size_ = LoadBE64(sbuf_ + 2);
    info_flags_ = LoadBE16(sbuf_ + 10);
  }
  shave_ = 0;
  bool final = reply_type_ == nbd::NBD_REP_ACK || (reply_type_ & nbd::NBD_REP_FLAG_ERROR);
  if (!final) return;
  bool ack = reply_type_ == nbd::NBD_REP_ACK;
  switch (outstanding_option_) {
    case nbd::NBD_OPT_STARTTLS:  // only ever the tap's own
      if (!ack) {
        CloseWith(fmt::format("the upstream refused STARTTLS (reply {:#x})", reply_type_));
        return;
      }
      tls_step_ = TlsStep::kUpstream;
      client_ = ClientState::kHold;
      return;
    case nbd::NBD_OPT_STRUCTURED_REPLY:
      if (ack) structured_ = true;
      break;
    case nbd::NBD_OPT_GO:
      if (ack) {
        if (!info_size_) {
          GoBlind("GO succeeded without NBD_INFO_EXPORT");
          return;
        }
        BeginTransmission(*info_size_, info_flags_);
        return;
      }
      break;
    case nbd::NBD_OPT_ABORT:
      client_ = ClientState::kPassThrough;
      server_ = ServerState::kPassThrough;
      return;
    default:
      break;
  }
  info_size_.reset();
  client_ = ClientState::kOption;
}

size_t NbdTap::FromServer(std::span<const uint8_t> in, uint64_t now_ns, std::string* to_client) {
  now_ns_ = now_ns;
  size_t used = 0;
  auto forward = [&](size_t n) {
    if (!internal_reply_) to_client->append(reinterpret_cast<const char*>(in.data() + used), n);
    used += n;
  };
  auto collect = [&](size_t want) {  // into sbuf_, forwarding
    size_t n = std::min(want - shave_, in.size() - used);
    std::memcpy(sbuf_ + shave_, in.data() + used, n);
    shave_ += n;
    forward(n);
    return shave_ == want;
  };
  while (used < in.size()) {
    size_t rest = in.size() - used;
    switch (server_) {
      case ServerState::kBlind:
      case ServerState::kPassThrough:
        forward(rest);
        break;
      case ServerState::kGreeting: {
        if (shave_ < 16 && !collect(16)) break;
        size_t want = LoadBE64(sbuf_ + 8) == kOldstyleMagic ? kOldstyleGreetingSize
                                                             : kNewstyleGreetingSize;
        if (collect(want)) ServerGreeting();
        break;
      }
      case ServerState::kOptionReply: {
        if (client_ == ClientState::kHold) return used;  // closing or TLS next: not ours
        if (client_ != ClientState::kWaitReply) {
          GoBlind("option reply from the server while no option was pending");
          break;
        }
        if (!collect(nbd::kOptionReplyHeaderSize)) break;
        shave_ = 0;
        if (LoadBE64(sbuf_) != nbd::kOptReplyMagic) {
          GoBlind(fmt::format("bad option reply magic {:#x}", LoadBE64(sbuf_)));
          break;
        }
        reply_type_ = LoadBE32(sbuf_ + 12);
        reply_length_ = LoadBE32(sbuf_ + 16);
        sleft_ = reply_length_;
        server_ = ServerState::kOptionReplyData;
        if (sleft_ == 0) OptionReplyDone();
        break;
      }
      case ServerState::kOptionReplyData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(sleft_, rest));
        size_t keep = std::min(n, kInfoExportSize - std::min(shave_, kInfoExportSize));
        std::memcpy(sbuf_ + shave_, in.data() + used, keep);
        shave_ += keep;
        forward(n);
        sleft_ -= n;
        if (sleft_ == 0) OptionReplyDone();
        break;
      }
      case ServerState::kExportNameReply: {
        if (!collect(10 + (no_zeroes_ ? 0 : 124))) break;
        shave_ = 0;
        BeginTransmission(LoadBE64(sbuf_), LoadBE16(sbuf_ + 8));
        break;
      }
      case ServerState::kTransmission: {
        auto span = in.subspan(used);
        forward(rest);
        auto consumed = replies_->Consume(span);
        if (!consumed.ok()) GoBlind(consumed.status().message());
        break;
      }
    }
  }
  return used;
}

// --- replies ---

Result<uint32_t> NbdTap::SimpleReplyDataLength(uint64_t cookie) {
  auto it = pending_.find(cookie);
  if (it == pending_.end()) {
    return Status::Corruption(fmt::format("reply for cookie {:#x}, which is not in flight", cookie));
  }
  return it->second.type == nbd::NBD_CMD_READ ? it->second.length : 0;
}

void NbdTap::OnError(uint64_t cookie, uint32_t, std::string_view) {
  auto it = pending_.find(cookie);
  if (it != pending_.end()) it->second.success = false;
}

void NbdTap::OnDone(uint64_t cookie) {
  auto it = pending_.find(cookie);
  if (it == pending_.end()) return;  // a chunk for no request: nothing to report
  const Pending& p = it->second;
  TappedRequest r;
  r.nbd_type = p.type;
  r.nbd_flags = p.flags;
  r.cookie = cookie;
  r.offset = p.offset;
  r.length = p.length;
  r.start_ns = p.start_ns;
  r.end_ns = std::max(now_ns_, p.start_ns);
  r.success = p.success;
  r.type = TraceTypeFromNbd(p.type);
  pending_.erase(it);
  if (r.type) sink_.OnRequest(r);
}

}  // namespace portal::trace
