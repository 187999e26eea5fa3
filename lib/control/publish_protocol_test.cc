// The control protocol of the CSI controller's attachment records: volume.publish,
// volume.unpublish, node.get, and the attachment a volume.inspect entry carries.
#include <catch2/catch.hpp>

#include "control/protocol.h"

namespace portal::control {
namespace {

Request Parse(std::string_view line) {
  std::string id;
  auto r = ParseRequest(line, &id);
  if (auto* e = std::get_if<ErrorReply>(&r)) FAIL(e->code << ": " << e->message);
  return std::get<Request>(r);
}

ErrorReply ParseError(std::string_view line) {
  std::string id;
  auto r = ParseRequest(line, &id);
  REQUIRE(std::holds_alternative<ErrorReply>(r));
  return std::get<ErrorReply>(r);
}

Reply Decode(const std::string& line) {
  REQUIRE(!line.empty());
  REQUIRE(line.back() == '\n');
  auto r = DecodeReply(std::string_view(line).substr(0, line.size() - 1));
  REQUIRE(r.ok());
  return *r;
}

const AttachmentEntry kAttachment{"db", "node-a", true, "2026-12-07T15:00:00.000000Z"};
constexpr std::string_view kAttachmentJson =
    R"({"volume":"db","node":"node-a","read_only":true,"since":"2026-12-07T15:00:00.000000Z"})";

TEST_CASE("publish requests parse with their fields", "[control]") {
  Request r = Parse(R"({"op":"volume.publish","name":"db","node":"node-a","read_only":true})");
  CHECK(r.op == Op::kVolumePublish);
  CHECK((r.name == "db" && r.node == "node-a" && r.read_only));
  CHECK(IsVolumeOp(r.op));
  CHECK_FALSE(Parse(R"({"op":"volume.publish","name":"db","node":"n"})").read_only);
  r = Parse(R"({"op":"volume.unpublish","name":"db"})");
  CHECK((r.op == Op::kVolumeUnpublish && r.name == "db" && r.node.empty()));
  CHECK(Parse(R"({"op":"volume.unpublish","name":"db","node":"node-a"})").node == "node-a");
  r = Parse(R"({"op":"node.get","name":"node-a"})");
  CHECK((r.op == Op::kNodeGet && r.name == "node-a"));
  CHECK(IsNodeOp(r.op));
  CHECK_FALSE(IsVolumeOp(r.op));
}

TEST_CASE("publish requests refuse missing and misplaced fields", "[control]") {
  for (std::string_view bad : {
           R"({"op":"volume.publish","name":"db"})",                     // no node
           R"({"op":"volume.publish","name":"db","node":""})",           // empty node
           R"({"op":"volume.publish","name":"db","node":7})",            // not a string
           R"({"op":"volume.publish","node":"n"})",                      // no name
           R"({"op":"volume.unpublish","name":"db","read_only":true})",  // read_only
           R"({"op":"volume.open","name":"db","node":"n"})",             // node elsewhere
           R"({"op":"device.attach","volume":"db","node":"n"})",
           R"({"op":"node.get"})",  // no name
           R"({"op":"node.get","name":"n","node":"n"})",
           R"({"op":"node.get","name":"n","volume":"v"})",
       }) {
    INFO(bad);
    CHECK(ParseError(bad).code == kBadRequest);
  }
}

TEST_CASE("publish requests encode byte for byte and parse back", "[control]") {
  Request r;
  r.op = Op::kVolumePublish;
  r.name = "db";
  r.node = "node-a";
  r.read_only = true;
  CHECK(EncodeRequest(r) ==
        "{\"op\":\"volume.publish\",\"name\":\"db\",\"read_only\":true,\"node\":\"node-a\"}\n");
  r.read_only = false;
  CHECK(EncodeRequest(r) == "{\"op\":\"volume.publish\",\"name\":\"db\",\"node\":\"node-a\"}\n");
  r.op = Op::kVolumeUnpublish;
  r.node.clear();
  CHECK(EncodeRequest(r) == "{\"op\":\"volume.unpublish\",\"name\":\"db\"}\n");
  r.op = Op::kNodeGet;
  r.name = "node-a";
  r.node = "ignored";
  CHECK(EncodeRequest(r) == "{\"op\":\"node.get\",\"name\":\"node-a\"}\n");
  Request back = Parse(R"({"op":"node.get","name":"node-a"})");
  CHECK(back.name == "node-a");
}

TEST_CASE("publish replies encode byte for byte and decode back", "[control]") {
  const std::string published = EncodeReply(AttachmentReply{kAttachment});
  CHECK(published == "{\"ok\":true,\"attachment\":" + std::string(kAttachmentJson) + "}\n");
  CHECK(std::get<AttachmentReply>(Decode(published)).attachment == kAttachment);

  const std::string unpublished = EncodeReply(UnpublishReply{true});
  CHECK(unpublished == "{\"ok\":true,\"unpublished\":true}\n");
  CHECK(std::get<UnpublishReply>(Decode(unpublished)).unpublished);
  CHECK_FALSE(std::get<UnpublishReply>(Decode(EncodeReply(UnpublishReply{false}))).unpublished);

  const NodeEntry node{"node-a", "10.0.0.5:7070", "2026-12-07T15:00:00.000000Z"};
  const std::string got = EncodeReply(NodeReply{node});
  CHECK(got == R"({"ok":true,"node":{"node":"node-a","control":"10.0.0.5:7070",)"
               R"("since":"2026-12-07T15:00:00.000000Z"}})"
               "\n");
  CHECK(std::get<NodeReply>(Decode(got)).node == node);
}

TEST_CASE("an inspected volume carries its attachment", "[control]") {
  VolumeEntry v;
  v.name = "db";
  v.size_bytes = 1 << 20;
  v.block_size = 4096;
  v.attachment = kAttachment;
  const std::string line = EncodeReply(VolumeListReply{{v}});
  CHECK(line.find("\"attachment\":" + std::string(kAttachmentJson)) != std::string::npos);
  const std::vector<VolumeEntry> back = std::get<VolumeListReply>(Decode(line)).volumes;
  REQUIRE(back.size() == 1);
  CHECK(back[0] == v);
  v.attachment.reset();  // published nowhere: no key at all
  const std::string none = EncodeReply(VolumeListReply{{v}});
  CHECK(none.find("attachment") == std::string::npos);
  CHECK_FALSE(std::get<VolumeListReply>(Decode(none)).volumes[0].attachment);
}

TEST_CASE("bad publish replies are Corruption", "[control]") {
  for (std::string_view bad : {
           R"({"ok":true,"attachment":[]})",
           R"({"ok":true,"attachment":{"volume":"db","node":"n","since":"s"}})",  // read_only
           R"({"ok":true,"attachment":{"volume":"db","node":1,"read_only":true,"since":"s"}})",
           R"({"ok":true,"unpublished":"yes"})",
           R"({"ok":true,"node":{"node":"n","control":"c"}})",  // no since
           R"({"ok":true,"node":"n"})",
       }) {
    INFO(bad);
    auto r = DecodeReply(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsCorruption());
  }
}

}  // namespace
}  // namespace portal::control
