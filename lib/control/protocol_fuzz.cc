// libFuzzer target control_protocol (fuzz/README.md): the control socket's codec, fed by
// a hostile peer. The byte stream is split into lines (LineReader, small pieces) and
// every line is parsed both as a request (what the daemon does) and as a reply (what
// portalctl does). Neither may throw or crash; a line that parses must encode back to
// what it said.
//
// Input: piece u8 (piece length = 1 + piece * 3), then the stream.
#include <cstdint>
#include <string>
#include <string_view>

#include "control/protocol.h"
#include "util/assert.h"

namespace {

using namespace portal::control;

void CheckRequest(std::string_view line) {
  std::string id_json;
  auto parsed = ParseRequest(line, &id_json);
  if (auto* error = std::get_if<ErrorReply>(&parsed)) {
    PORTAL_ASSERT(!error->code.empty() && !error->message.empty(), "error without a reason");
    // The daemon answers it, echoing the id.
    auto reply = EncodeReply(*error, id_json);
    PORTAL_ASSERT(DecodeReply(std::string_view(reply).substr(0, reply.size() - 1)).ok(),
                  "the daemon's error reply does not decode");
    return;
  }
  const Request& r = std::get<Request>(parsed);
  PORTAL_ASSERT(r.id_json == id_json, "id not returned");
  const std::string again = EncodeRequest(r);
  PORTAL_ASSERT(!again.empty() && again.back() == '\n', "request without its newline");
  std::string id2;
  auto reparsed = ParseRequest(std::string_view(again).substr(0, again.size() - 1), &id2);
  PORTAL_ASSERT(std::holds_alternative<Request>(reparsed), "an encoded request does not parse");
  const Request& r2 = std::get<Request>(reparsed);
  PORTAL_ASSERT(r2.op == r.op && r2.name == r.name && r2.id_json == r.id_json,
                "request changed in a round trip");
}

void CheckReply(std::string_view line) {
  auto reply = DecodeReply(line);
  if (!reply.ok()) {
    PORTAL_ASSERT(reply.status().IsCorruption(), "a bad reply is not Corruption");
    return;
  }
  const std::string again = EncodeReply(*reply);
  auto decoded = DecodeReply(std::string_view(again).substr(0, again.size() - 1));
  PORTAL_ASSERT(decoded.ok(), "an encoded reply does not decode");
  PORTAL_ASSERT(decoded->index() == reply->index(), "reply kind changed in a round trip");
  if (auto* s = std::get_if<StatusReply>(&*reply)) {
    PORTAL_ASSERT(std::get<StatusReply>(*decoded).status == s->status, "status changed");
  } else if (auto* l = std::get_if<SnapshotListReply>(&*reply)) {
    PORTAL_ASSERT(std::get<SnapshotListReply>(*decoded).snapshots == l->snapshots,
                  "snapshot list changed");
  } else if (auto* one = std::get_if<SnapshotReply>(&*reply)) {
    PORTAL_ASSERT(std::get<SnapshotReply>(*decoded).snapshot == one->snapshot, "snapshot changed");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + size_t{data[0]} * 3;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  // A small bound so that inputs reach the too-long path.
  LineReader reader(1 + piece * 4);
  auto drain = [&] {
    while (auto line = reader.Next()) {
      PORTAL_ASSERT(line->too_long == line->text.empty(), "too-long line with text");
      PORTAL_ASSERT(line->text.size() <= 1 + piece * 4, "line over the bound");
      if (line->too_long) continue;
      CheckRequest(line->text);
      CheckReply(line->text);
    }
  };
  while (!in.empty()) {
    reader.Feed(in.substr(0, piece));
    in.remove_prefix(std::min(piece, in.size()));
    PORTAL_ASSERT(reader.buffered() <= 1 + piece * 4, "buffered past the bound");
    drain();
  }
  reader.Finish();
  drain();
  return 0;
}
