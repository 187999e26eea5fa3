#include "nbd/client_handshake.h"

#include <algorithm>

#include <fmt/format.h>

#include "nbd/protocol.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

void AppendOption(std::string* out, uint32_t option, std::string_view data) {
  PutBE64(out, kIHaveOpt);
  PutBE32(out, option);
  PutBE32(out, static_cast<uint32_t>(data.size()));
  out->append(data);
}

std::string ReplyTypeName(uint32_t type) {
  switch (type) {
    case NBD_REP_ERR_UNSUP: return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY: return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID: return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM: return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD: return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN: return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN: return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG: return "NBD_REP_ERR_TOO_BIG";
    default: return fmt::format("reply type {:#x}", type);
  }
}

}  // namespace

void ClientHandshake::Fail(std::string message) {
  state_ = State::kFailed;
  error_ = Status::IOError(std::move(message));
}

void ClientHandshake::SendGo(std::string* out) {
  std::string data;
  PutBE32(&data, static_cast<uint32_t>(options_.export_name.size()));
  data.append(options_.export_name);
  PutBE16(&data, 1);
  PutBE16(&data, NBD_INFO_BLOCK_SIZE);
  AppendOption(out, NBD_OPT_GO, data);
  step_ = Step::kGo;
}

void ClientHandshake::OnReply(uint32_t option, uint32_t type, std::string_view data,
                              std::string* out) {
  bool error = type & NBD_REP_FLAG_ERROR;
  auto describe = [&] {
    return fmt::format("{}{}{}", ReplyTypeName(type), data.empty() ? "" : ": ", data);
  };
  switch (step_) {
    case Step::kStructured:
      if (option != NBD_OPT_STRUCTURED_REPLY) return Fail("option reply out of order");
      if (type != NBD_REP_ACK && !error) return;  // not final
      n_.structured_replies = type == NBD_REP_ACK;
      if (n_.structured_replies && options_.base_allocation) {
        std::string d;
        PutBE32(&d, static_cast<uint32_t>(options_.export_name.size()));
        d.append(options_.export_name);
        PutBE32(&d, 1);
        PutBE32(&d, static_cast<uint32_t>(std::string_view(kBaseAllocation).size()));
        d.append(kBaseAllocation);
        AppendOption(out, NBD_OPT_SET_META_CONTEXT, d);
        step_ = Step::kMeta;
      } else {
        SendGo(out);
      }
      return;
    case Step::kMeta:
      if (option != NBD_OPT_SET_META_CONTEXT) return Fail("option reply out of order");
      if (type == NBD_REP_META_CONTEXT && data.size() >= 4 &&
          data.substr(4) == kBaseAllocation) {
        n_.base_allocation = true;
        n_.base_allocation_id = LoadBE32(reinterpret_cast<const uint8_t*>(data.data()));
        return;
      }
      if (type == NBD_REP_ACK || error) SendGo(out);  // no context is not fatal
      return;
    case Step::kGo:
      if (option != NBD_OPT_GO) return Fail("option reply out of order");
      if (type == NBD_REP_INFO && data.size() >= 2) {
        auto p = reinterpret_cast<const uint8_t*>(data.data());
        uint16_t info = LoadBE16(p);
        if (info == NBD_INFO_EXPORT && data.size() >= 12) {
          n_.size_bytes = LoadBE64(p + 2);
          n_.transmission_flags = LoadBE16(p + 10);
        } else if (info == NBD_INFO_BLOCK_SIZE && data.size() >= 14) {
          n_.min_block_size = LoadBE32(p + 2);
          n_.preferred_block_size = LoadBE32(p + 6);
          n_.max_payload = LoadBE32(p + 10);
        }
        return;
      }
      if (type == NBD_REP_ACK) {
        state_ = State::kDone;
        return;
      }
      if (type == NBD_REP_ERR_UNSUP) {  // an old server: EXPORT_NAME instead
        AppendOption(out, NBD_OPT_EXPORT_NAME, options_.export_name);
        step_ = Step::kExportName;
        return;
      }
      if (error) {
        return Fail(fmt::format("the server refused export \"{}\": {}", options_.export_name,
                                describe()));
      }
      return;
    default:
      return Fail("unexpected option reply");
  }
}

size_t ClientHandshake::Consume(std::span<const uint8_t> in, std::string* out) {
  size_t used = 0;
  // Collects into buf_ until it holds `want` bytes.
  auto collect = [&](size_t want) {
    size_t n = std::min(want - std::min(want, buf_.size()), in.size() - used);
    buf_.append(reinterpret_cast<const char*>(in.data() + used), n);
    used += n;
    return buf_.size() >= want;
  };
  auto bytes = [&] { return reinterpret_cast<const uint8_t*>(buf_.data()); };
  while (state_ == State::kNegotiating) {
    if (step_ == Step::kGreeting) {
      if (!collect(18)) break;
      if (LoadBE64(bytes()) != kNbdMagic) {
        Fail("not an NBD server (bad greeting magic)");
        break;
      }
      if (LoadBE64(bytes() + 8) != kIHaveOpt) {
        Fail("the server speaks the oldstyle protocol, which this client does not");
        break;
      }
      uint16_t flags = LoadBE16(bytes() + 16);
      if (!(flags & NBD_FLAG_FIXED_NEWSTYLE)) {
        Fail("the server does not support the fixed newstyle handshake");
        break;
      }
      no_zeroes_ = flags & NBD_FLAG_NO_ZEROES;
      buf_.clear();
      PutBE32(out, NBD_FLAG_C_FIXED_NEWSTYLE | (no_zeroes_ ? NBD_FLAG_C_NO_ZEROES : 0));
      if (options_.structured_replies) {
        AppendOption(out, NBD_OPT_STRUCTURED_REPLY, "");
        step_ = Step::kStructured;
      } else {
        SendGo(out);
      }
      continue;
    }
    if (step_ == Step::kExportName) {
      size_t want = 10 + (no_zeroes_ ? 0 : 124);
      if (!collect(want)) break;
      n_.size_bytes = LoadBE64(bytes());
      n_.transmission_flags = LoadBE16(bytes() + 8);
      buf_.clear();
      state_ = State::kDone;
      break;
    }
    if (!collect(kOptionReplyHeaderSize)) break;
    if (LoadBE64(bytes()) != kOptReplyMagic) {
      Fail("bad option reply magic");
      break;
    }
    uint32_t length = LoadBE32(bytes() + 16);
    if (length > kMaxReplyPayload) {
      Fail(fmt::format("option reply of {} bytes", length));
      break;
    }
    if (!collect(kOptionReplyHeaderSize + length)) break;
    uint32_t option = LoadBE32(bytes() + 8);
    uint32_t type = LoadBE32(bytes() + 12);
    std::string reply = std::move(buf_);
    buf_.clear();
    OnReply(option, type, std::string_view(reply).substr(kOptionReplyHeaderSize), out);
  }
  return used;
}

}  // namespace portal::nbd
