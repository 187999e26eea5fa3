// Node records and attachment records: nodes register, a volume is published to one node
// at a time, and unpublish removes only the record of the node it names.
#include "daemon/attachments.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"

namespace portal::daemon {
namespace {

using control::AttachmentEntry;
using control::NodeEntry;

constexpr const char* kSince = "2026-12-07T15:00:00.000000Z";

TEST_CASE("node and attachment records encode and decode, and damage is corruption",
          "[daemon][attachments]") {
  NodeEntry n{"node-a", "10.0.0.5:7070", kSince};
  CHECK(EncodeNodeRecord(n) ==
        R"({"node":"node-a","control":"10.0.0.5:7070","since":"2026-12-07T15:00:00.000000Z"})"
        "\n");
  CHECK(*DecodeNodeRecord(EncodeNodeRecord(n)) == n);
  AttachmentEntry a{"db", "node-a", false, kSince};
  CHECK(EncodeAttachmentRecord(a) == R"({"volume":"db","node":"node-a","read_only":false,)"
                                     R"("since":"2026-12-07T15:00:00.000000Z"})"
                                     "\n");
  CHECK(*DecodeAttachmentRecord(EncodeAttachmentRecord(a)) == a);
  CHECK(NodeKey("node-a") == "nodes/node-a.json");
  CHECK(AttachmentKey("db") == "attachments/db.json");
  CHECK(DecodeNodeRecord("[]").status().IsCorruption());
  CHECK(DecodeNodeRecord(R"({"node":"n","control":"c"})").status().IsCorruption());
  CHECK(
      DecodeAttachmentRecord(R"({"volume":"db","node":"n","since":"s"})").status().IsCorruption());
  CHECK(DecodeAttachmentRecord(R"({"volume":"db","node":"n","read_only":1,"since":"s"})")
            .status()
            .IsCorruption());
}

TEST_CASE("nodes register under a valid id only", "[daemon][attachments]") {
  SimEnv env;
  objstore::MemoryStore store;
  REQUIRE(RunSim(env, RegisterNode(store, {"node-a", "10.0.0.1:7070", kSince})).ok());
  auto found = RunSim(env, FindNode(store, "node-a"));
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  CHECK((*found)->control == "10.0.0.1:7070");
  // A restart overwrites it (a new address).
  REQUIRE(RunSim(env, RegisterNode(store, {"node-a", "10.0.0.9:7070", kSince})).ok());
  CHECK((*RunSim(env, FindNode(store, "node-a")))->control == "10.0.0.9:7070");
  CHECK_FALSE(RunSim(env, FindNode(store, "node-b"))->has_value());
  // A Kubernetes node name of the longest kind (a DNS subdomain of 253 bytes) is an id;
  // one byte more, or anything that breaks the rule, names no object, either way.
  const std::string longest = std::string(61, 'n') + "." + std::string(63, 'o') + "." +
                              std::string(63, 'd') + "." + std::string(63, 'e');
  REQUIRE(longest.size() == 253);
  REQUIRE(RunSim(env, RegisterNode(store, {longest, "10.0.0.2:7070", kSince})).ok());
  CHECK((*RunSim(env, FindNode(store, longest)))->node == longest);
  for (std::string bad : {std::string("../x"), std::string("Node-A"), std::string("a/b"),
                          std::string(""), std::string("-x"), std::string("x."),
                          longest + "x"}) {
    INFO(bad);
    CHECK(RunSim(env, RegisterNode(store, {bad, "c", kSince})).code() ==
          Status::Code::kInvalidArgument);
    CHECK_FALSE(RunSim(env, FindNode(store, bad))->has_value());
  }
  CHECK(RunSim(env, store.List("nodes/"))->size() == 2);
}

TEST_CASE("a volume is published to one node, and unpublish removes only that node's record",
          "[daemon][attachments]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto publish = [&](const char* node, bool ro) {
    auto r = RunSim(env, PublishVolume(store, {"db", node, ro, kSince}));
    REQUIRE(r.ok());
    return *r;
  };
  CHECK_FALSE(RunSim(env, FindAttachment(store, "db"))->has_value());
  CHECK(publish("node-a", false).kind == PublishOutcome::kPublished);
  CHECK(publish("node-a", false).kind == PublishOutcome::kPublished);  // idempotent
  PublishOutcome other = publish("node-b", false);
  CHECK(other.kind == PublishOutcome::kOtherNode);
  CHECK(other.record.node == "node-a");
  CHECK(publish("node-a", true).kind == PublishOutcome::kOtherMode);
  CHECK((*RunSim(env, FindAttachment(store, "db")))->node == "node-a");

  CHECK_FALSE(*RunSim(env, UnpublishVolume(store, "db", "node-b")));  // not node-b's
  CHECK(RunSim(env, FindAttachment(store, "db"))->has_value());
  CHECK(*RunSim(env, UnpublishVolume(store, "db", "node-a")));
  CHECK_FALSE(RunSim(env, FindAttachment(store, "db"))->has_value());
  CHECK_FALSE(*RunSim(env, UnpublishVolume(store, "db", "node-a")));  // idempotent
  CHECK(publish("node-b", true).kind == PublishOutcome::kPublished);  // free again
  CHECK(*RunSim(env, UnpublishVolume(store, "db", "")));              // any node

  // A record for another volume under this key is damage, not an attachment.
  REQUIRE(RunSim(env,
                 store.Put("attachments/x.json", EncodeAttachmentRecord({"y", "n", false, kSince})))
              .ok());
  CHECK(RunSim(env, FindAttachment(store, "x")).status().IsCorruption());
  CHECK(RunSim(env, PublishVolume(store, {"x", "n", false, kSince})).status().IsCorruption());
}

}  // namespace
}  // namespace portal::daemon
