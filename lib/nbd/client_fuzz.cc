// libFuzzer target nbd_client (fuzz/README.md): the client side of the NBD codecs, fed
// by a hostile server. The handshake (ClientHandshake) then, once it is done, the
// transmission replies (ReplyReader), with the server's bytes in arbitrary pieces. Both
// must fail with an error on bad bytes, never crash, and keep the reader's promise that a
// simple reply's data stays inside its READ. (Chunks and error replies may name cookies
// not in flight: ReplyReader passes them on and its handlers ignore them.)
//
// Input: mode u8 (bit 0 structured replies, bit 1 base:allocation, bit 2 skip the
// handshake), piece u8 (piece length = 1 + piece * 7), then the server's bytes.
#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "nbd/client_handshake.h"
#include "nbd/reply_reader.h"
#include "util/assert.h"

namespace {

using portal::Result;
using portal::Status;
using portal::nbd::ClientHandshake;
using portal::nbd::ReplyReader;

// Requests 1..16 are in flight; a READ's length is cookie * 100 bytes.
class Handler final : public ReplyReader::Handler {
 public:
  Handler() {
    for (uint64_t c = 1; c <= 16; ++c) inflight_[c] = static_cast<uint32_t>(c * 100);
  }
  Result<uint32_t> SimpleReplyDataLength(uint64_t cookie) override {
    auto it = inflight_.find(cookie);
    if (it == inflight_.end()) return Status::IOError("unknown cookie");
    return it->second;
  }
  void OnData(uint64_t cookie, bool absolute, uint64_t offset,
              std::span<const uint8_t> bytes) override {
    auto it = inflight_.find(cookie);
    if (!absolute) {
      PORTAL_ASSERT(it != inflight_.end(), "simple reply data for a request not in flight");
      PORTAL_ASSERT(offset + bytes.size() <= it->second, "simple reply data overruns its READ");
    }
    if (!bytes.empty()) sink_ ^= bytes.front() ^ bytes.back();  // touch the bytes (ASan)
  }
  void OnHole(uint64_t, uint64_t, uint32_t) override {}
  void OnExtent(uint64_t, uint32_t, uint32_t, uint32_t) override {}
  void OnError(uint64_t, uint32_t, std::string_view message) override {
    if (!message.empty()) sink_ ^= static_cast<uint8_t>(message.back());
  }
  void OnDone(uint64_t cookie) override { inflight_.erase(cookie); }

 private:
  std::map<uint64_t, uint32_t> inflight_;
  uint8_t sink_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const size_t piece = 1 + size_t{data[1]} * 7;
  std::span<const uint8_t> in(data + 2, size - 2);

  bool structured = (mode & 1) != 0;
  if (!(mode & 4)) {
    ClientHandshake hs({.export_name = "portalbd",
                        .structured_replies = (mode & 1) != 0,
                        .base_allocation = (mode & 2) != 0});
    std::string out;
    while (!in.empty() && hs.state() == ClientHandshake::State::kNegotiating) {
      const size_t given = std::min(piece, in.size());
      auto n = hs.Consume(in.first(given), &out);
      PORTAL_ASSERT(n <= given, "consumed more than it was given");
      // Still negotiating: it must have taken everything (it buffers partial messages).
      PORTAL_ASSERT(n == given || hs.state() != ClientHandshake::State::kNegotiating,
                    "handshake left bytes while negotiating");
      in = in.subspan(n);
      out.clear();
    }
    if (hs.state() != ClientHandshake::State::kDone) {
      PORTAL_ASSERT(hs.state() != ClientHandshake::State::kFailed || !hs.error().ok(),
                    "failed without an error");
      return 0;
    }
    structured = hs.negotiated().structured_replies;
  }

  Handler handler;
  ReplyReader reader(handler, structured);
  while (!in.empty()) {
    auto n = reader.Consume(in.first(std::min(piece, in.size())));
    if (!n.ok()) break;
    PORTAL_ASSERT(*n == std::min(piece, in.size()), "reader left bytes without an error");
    in = in.subspan(*n);
  }
  return 0;
}
