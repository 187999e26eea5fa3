// Test helpers for driving nbd::Session byte by byte, without sockets: a Host that
// queues completions, builders for client messages, and an adapter loop.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nbd/export.h"
#include "nbd/protocol.h"
#include "nbd/session.h"
#include "nbd/transmission.h"
#include "testing/memory_volume.h"
#include "util/coding.h"

namespace portal::testing {

// Completions queue here and run when the test calls Drain().
class QueueHost final : public nbd::Session::Host {
 public:
  void RunInContext(std::function<void()> fn) override { queue_.push_back(std::move(fn)); }
  std::shared_ptr<void> KeepAlive() override { return nullptr; }
  bool Drain() {
    bool any = false;
    while (!queue_.empty()) {
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
      any = true;
    }
    return any;
  }
  size_t pending() const { return queue_.size(); }

 private:
  std::deque<std::function<void()>> queue_;
};

// One export, "portalbd", over a MemoryVolume of `size` bytes (4 KiB blocks): what a
// handshake test negotiates against.
struct MemoryExport {
  explicit MemoryExport(uint64_t size)
      : device(std::make_shared<MemoryVolume>(size, 4096)),
        catalog(nbd::ExportInfo{"portalbd", "test volume", size, false}, device) {}
  std::shared_ptr<MemoryVolume> device;
  nbd::SingleExportCatalog catalog;
};

// --- client message builders ---
inline std::string ClientFlags(uint32_t flags) {
  std::string s;
  PutBE32(&s, flags);
  return s;
}

inline std::string Option(uint32_t option, std::string_view data) {
  std::string s;
  PutBE64(&s, nbd::kIHaveOpt);
  PutBE32(&s, option);
  PutBE32(&s, static_cast<uint32_t>(data.size()));
  s.append(data);
  return s;
}

inline std::string InfoOrGoData(std::string_view name, std::vector<uint16_t> infos = {}) {
  std::string d;
  PutBE32(&d, static_cast<uint32_t>(name.size()));
  d.append(name);
  PutBE16(&d, static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) PutBE16(&d, i);
  return d;
}

inline std::string MetaData(std::string_view name, std::vector<std::string> queries) {
  std::string d;
  PutBE32(&d, static_cast<uint32_t>(name.size()));
  d.append(name);
  PutBE32(&d, static_cast<uint32_t>(queries.size()));
  for (const auto& q : queries) {
    PutBE32(&d, static_cast<uint32_t>(q.size()));
    d.append(q);
  }
  return d;
}

inline std::string Request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
                           uint16_t flags = 0, std::string_view payload = {}) {
  std::string s(nbd::kRequestHeaderSize, '\0');
  nbd::EncodeRequestHeader({flags, type, cookie, offset, length},
                           reinterpret_cast<uint8_t*>(s.data()));
  s.append(payload);
  return s;
}

// --- server message builders (expected bytes) ---
inline std::string OptReply(uint32_t option, uint32_t type, std::string_view payload = {}) {
  std::string s;
  nbd::AppendOptionReply(&s, option, type, payload);
  return s;
}

inline std::string SimpleReply(uint32_t error, uint64_t cookie, std::string_view data = {}) {
  std::string s;
  nbd::AppendSimpleReply(&s, error, cookie);
  s.append(data);
  return s;
}

inline std::string Chunk(uint16_t flags, uint16_t type, uint64_t cookie,
                         std::string_view payload) {
  std::string s(nbd::kStructuredReplyHeaderSize, '\0');
  nbd::EncodeStructuredHeader(reinterpret_cast<uint8_t*>(s.data()), flags, type, cookie,
                              static_cast<uint32_t>(payload.size()));
  s.append(payload);
  return s;
}

// Drives a Session: feeds input in chunks of at most `chunk` bytes, runs completions,
// and collects output.
class SessionDriver {
 public:
  SessionDriver(nbd::ExportCatalog& catalog, nbd::Session::Options options = {})
      : session_(catalog, host_, options, "test") {
    session_.Start();
  }
  // A kernel-style session: no handshake, in transmission on `exp` at once.
  SessionDriver(nbd::ExportCatalog& catalog, std::shared_ptr<nbd::OpenExport> exp,
                nbd::Session::Options options = {})
      : session_(catalog, host_, options, "test") {
    session_.StartTransmission(std::move(exp));
  }

  // Feeds all of `bytes`; returns how many were accepted (less if the session stopped
  // wanting input).
  size_t Feed(std::string_view bytes, size_t chunk = SIZE_MAX) {
    size_t fed = 0;
    while (fed < bytes.size()) {
      RunCompletions();
      auto space = session_.InputSpace();
      if (space.empty()) break;
      size_t n = std::min({space.size(), bytes.size() - fed, chunk});
      std::memcpy(space.data(), bytes.data() + fed, n);
      session_.CommitInput(n);
      fed += n;
    }
    RunCompletions();
    return fed;
  }

  void RunCompletions() {
    while (host_.Drain() || (extra_ && extra_())) {
    }
  }

  // Everything the session wants to send, consumed.
  std::string TakeOutput() {
    RunCompletions();
    std::string out;
    std::vector<std::span<const uint8_t>> bufs;
    while (session_.HasOutput()) {
      bufs.clear();
      session_.GatherOutput(&bufs, 64);
      size_t n = 0;
      for (auto b : bufs) {
        out.append(reinterpret_cast<const char*>(b.data()), b.size());
        n += b.size();
      }
      session_.ConsumeOutput(n);
    }
    return out;
  }

  // Also run `fn` (e.g. a SimEnv step) until it returns false, when draining.
  void SetExtraPump(std::function<bool()> fn) { extra_ = std::move(fn); }

  nbd::Session& session() { return session_; }
  QueueHost& host() { return host_; }

 private:
  QueueHost host_;
  nbd::Session session_;
  std::function<bool()> extra_;
};

inline std::string Hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

}  // namespace portal::testing
