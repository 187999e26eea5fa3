#include "dst/nbd_client.h"

#include <cstring>

#include <fmt/format.h>

#include "nbd/protocol.h"
#include "nbd/transmission.h"
#include "util/coding.h"

namespace portal::dst {
namespace {

using namespace portal::nbd;  // NBD_* constants

const uint8_t* U8(const std::string& s, size_t at = 0) {
  return reinterpret_cast<const uint8_t*>(s.data()) + at;
}

std::string Option(uint32_t option, const std::string& data) {
  std::string s;
  PutBE64(&s, kIHaveOpt);
  PutBE32(&s, option);
  PutBE32(&s, static_cast<uint32_t>(data.size()));
  return s + data;
}

}  // namespace

NbdClient::NbdClient(SimEnv& env, std::shared_ptr<device::BlockDevice> device, bool structured,
                     std::function<void(const std::string&)> on_error)
    : env_(env), structured_(structured), on_error_(std::move(on_error)) {
  ExportInfo info;
  info.name = "portalbd";
  info.size_bytes = device->size_bytes();
  info.preferred_block_size = device->block_size();
  catalog_ = std::make_unique<SingleExportCatalog>(info, std::move(device));
  Session::Host& host = *this;
  session_ = std::make_unique<Session>(*catalog_, host, Session::Options{}, "dst");
}

NbdClient::~NbdClient() {
  // A session must not die with requests in flight; an abandoned (crashed) client whose
  // requests never finished is leaked instead, as a dead process would leak it.
  if (session_ && session_->inflight() > 0) (void)session_.release();
}

void NbdClient::Fail(const std::string& what) {
  if (broken_) return;
  broken_ = true;
  if (!abandoned_ && on_error_) on_error_("NBD: " + what);
}

void NbdClient::RunInContext(std::function<void()> fn) {
  env_.Post([this, fn = std::move(fn)] {
    fn();
    Pump();
  });
}

void NbdClient::Pump() {
  while (!to_send_.empty()) {
    auto space = session_->InputSpace();
    if (space.empty()) break;
    const size_t n = std::min(space.size(), to_send_.size());
    std::memcpy(space.data(), to_send_.data(), n);
    to_send_.erase(0, n);
    session_->CommitInput(n);
  }
  std::vector<std::span<const uint8_t>> bufs;
  while (session_->HasOutput()) {
    bufs.clear();
    session_->GatherOutput(&bufs, 64);
    size_t n = 0;
    for (auto b : bufs) {
      received_.append(reinterpret_cast<const char*>(b.data()), b.size());
      n += b.size();
    }
    session_->ConsumeOutput(n);
  }
  if (transmission_) ParseReplies();
}

bool NbdClient::ParseHandshakeReply(uint32_t* type, std::string* payload) {
  if (received_.size() < kOptionReplyHeaderSize) return false;
  const uint32_t len = LoadBE32(U8(received_, 16));
  if (received_.size() < kOptionReplyHeaderSize + len) return false;
  if (LoadBE64(U8(received_)) != kOptReplyMagic) {
    Fail("bad option reply magic");
    return false;
  }
  *type = LoadBE32(U8(received_, 12));
  *payload = received_.substr(kOptionReplyHeaderSize, len);
  received_.erase(0, kOptionReplyHeaderSize + len);
  return true;
}

bool NbdClient::Connect() {
  session_->Start();
  Pump();
  // Greeting: NBDMAGIC, IHAVEOPT, handshake flags.
  if (received_.size() < 18 || LoadBE64(U8(received_)) != kNbdMagic) {
    Fail("bad greeting");
    return false;
  }
  received_.erase(0, 18);
  PutBE32(&to_send_, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  // Each option: send, then collect replies until the final ACK (or an error).
  auto exchange = [&](uint32_t option, const std::string& data, bool* got_meta) -> bool {
    to_send_ += Option(option, data);
    for (int spins = 0; spins < 1000 && !broken_; ++spins) {
      Pump();
      uint32_t type;
      std::string payload;
      while (ParseHandshakeReply(&type, &payload)) {
        if (type == NBD_REP_ACK) return true;
        if (type == NBD_REP_META_CONTEXT && got_meta) *got_meta = true;
        if (type & NBD_REP_FLAG_ERROR) {
          Fail(fmt::format("option {} refused with {:#x}", option, type));
          return false;
        }
      }
      if (!env_.RunOne()) break;
    }
    Fail(fmt::format("no reply to option {}", option));
    return false;
  };
  if (structured_) {
    if (!exchange(NBD_OPT_STRUCTURED_REPLY, "", nullptr)) return false;
    std::string meta;
    PutBE32(&meta, 0);  // export name "" (the default export)
    PutBE32(&meta, 1);
    PutBE32(&meta, static_cast<uint32_t>(std::strlen(kBaseAllocation)));
    meta += kBaseAllocation;
    bool got = false;
    if (!exchange(NBD_OPT_SET_META_CONTEXT, meta, &got)) return false;
    if (!got) {
      Fail("base:allocation not granted");
      return false;
    }
  }
  std::string go;
  PutBE32(&go, 0);
  PutBE16(&go, 0);
  if (!exchange(NBD_OPT_GO, go, nullptr)) return false;
  transmission_ = true;
  return !broken_;
}

void NbdClient::Send(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length,
                     std::string payload, Done done) {
  const uint64_t cookie = next_cookie_++;
  std::string req(kRequestHeaderSize, '\0');
  EncodeRequestHeader({flags, type, cookie, offset, length}, reinterpret_cast<uint8_t*>(req.data()));
  to_send_ += req;
  to_send_ += payload;
  Pending p{type, offset, length, {}, std::move(done)};
  if (type == NBD_CMD_READ) p.reply.data.assign(length, '\0');
  pending_.emplace(cookie, std::move(p));
  // The session parses input on our call; completions come back through the env.
  env_.Post([this] { Pump(); });
}

void NbdClient::ParseReplies() {
  for (;;) {
    if (broken_ || received_.size() < 4) return;
    const uint32_t magic = LoadBE32(U8(received_));
    if (magic == NBD_SIMPLE_REPLY_MAGIC) {
      if (received_.size() < kSimpleReplyHeaderSize) return;
      const uint32_t error = LoadBE32(U8(received_, 4));
      const uint64_t cookie = LoadBE64(U8(received_, 8));
      auto it = pending_.find(cookie);
      if (it == pending_.end()) return Fail(fmt::format("reply for unknown cookie {}", cookie));
      Pending& p = it->second;
      size_t need = kSimpleReplyHeaderSize;
      const bool has_data = p.type == NBD_CMD_READ && error == 0;
      if (has_data && structured_) return Fail("simple reply with data after structured replies");
      if (has_data) need += p.length;
      if (received_.size() < need) return;
      if (has_data) p.reply.data = received_.substr(kSimpleReplyHeaderSize, p.length);
      received_.erase(0, need);
      p.reply.error = error;
      Pending done = std::move(p);
      pending_.erase(it);
      done.done(std::move(done.reply));
      continue;
    }
    if (magic != NBD_STRUCTURED_REPLY_MAGIC || !structured_) {
      return Fail(fmt::format("bad reply magic {:#x}", magic));
    }
    if (received_.size() < kStructuredReplyHeaderSize) return;
    const uint16_t flags = LoadBE16(U8(received_, 4));
    const uint16_t type = LoadBE16(U8(received_, 6));
    const uint64_t cookie = LoadBE64(U8(received_, 8));
    const uint32_t len = LoadBE32(U8(received_, 16));
    if (received_.size() < kStructuredReplyHeaderSize + len) return;
    const std::string body = received_.substr(kStructuredReplyHeaderSize, len);
    received_.erase(0, kStructuredReplyHeaderSize + len);
    auto it = pending_.find(cookie);
    if (it == pending_.end()) return Fail(fmt::format("chunk for unknown cookie {}", cookie));
    Pending& p = it->second;
    const uint8_t* b = U8(body);
    switch (type) {
      case NBD_REPLY_TYPE_NONE:
        break;
      case NBD_REPLY_TYPE_OFFSET_DATA: {
        if (len < 8 || p.type != NBD_CMD_READ) return Fail("bad OFFSET_DATA chunk");
        const uint64_t off = LoadBE64(b);
        if (off < p.offset || off - p.offset + (len - 8) > p.length) {
          return Fail("OFFSET_DATA outside the request");
        }
        std::memcpy(p.reply.data.data() + (off - p.offset), b + 8, len - 8);
        break;
      }
      case NBD_REPLY_TYPE_OFFSET_HOLE: {
        if (len != 12 || p.type != NBD_CMD_READ) return Fail("bad OFFSET_HOLE chunk");
        const uint64_t off = LoadBE64(b);
        const uint32_t size = LoadBE32(b + 8);
        if (off < p.offset || off - p.offset + size > p.length || size == 0) {
          return Fail("OFFSET_HOLE outside the request");
        }
        std::memset(p.reply.data.data() + (off - p.offset), 0, size);
        p.reply.holes.push_back({off - p.offset, size});
        break;
      }
      case NBD_REPLY_TYPE_BLOCK_STATUS: {
        if (len < 12 || (len - 4) % 8 != 0 || p.type != NBD_CMD_BLOCK_STATUS) {
          return Fail("bad BLOCK_STATUS chunk");
        }
        for (uint32_t at = 4; at < len; at += 8) {
          const uint32_t n = LoadBE32(b + at), st = LoadBE32(b + at + 4);
          p.reply.extents.push_back({n, (st & NBD_STATE_HOLE) != 0, (st & NBD_STATE_ZERO) != 0});
        }
        break;
      }
      case NBD_REPLY_TYPE_ERROR:
      case NBD_REPLY_TYPE_ERROR_OFFSET:
        if (len < 6) return Fail("bad ERROR chunk");
        p.reply.error = LoadBE32(b);
        if (p.reply.error == 0) return Fail("ERROR chunk with error 0");
        break;
      default:
        return Fail(fmt::format("unknown chunk type {}", type));
    }
    if (flags & NBD_REPLY_FLAG_DONE) {
      Pending done = std::move(p);
      pending_.erase(it);
      done.done(std::move(done.reply));
    }
  }
}

}  // namespace portal::dst
