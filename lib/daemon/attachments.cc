#include "daemon/attachments.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "control/entry_json.h"
#include "util/log.h"

namespace portal::daemon {

namespace {

auto Log() { return log::Get("portalbd"); }

std::string Dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// A record's JSON object; Corruption naming `what` otherwise. Its fields are decoded by
// the control protocol's entry codecs (control/entry_json.h), as in replies.
Result<nlohmann::ordered_json> ParseRecord(std::string_view text, const char* what) {
  auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption(fmt::format("{} is not a JSON object", what));
  }
  return j;
}

// The record at `key` decoded by `decode`, nullopt when there is none.
template <typename Entry, typename Decode>
Task<Result<std::optional<Entry>>> Read(objstore::ObjectStore& root, std::string key,
                                        Decode decode) {
  auto text = co_await root.Get(key);
  if (text.status().IsNotFound()) co_return std::optional<Entry>();
  if (!text.ok()) co_return text.status().WithContext("reading " + key);
  auto e = decode(*text);
  if (!e.ok()) co_return e.status().WithContext(key);
  co_return std::optional<Entry>(std::move(*e));
}

}  // namespace

std::string NodeKey(std::string_view node) { return fmt::format("nodes/{}.json", node); }

std::string AttachmentKey(std::string_view volume) {
  return fmt::format("attachments/{}.json", volume);
}

std::string EncodeNodeRecord(const control::NodeEntry& n) {
  return Dump(control::entry_json::NodeJson(n));
}

Result<control::NodeEntry> DecodeNodeRecord(std::string_view text) {
  ASSIGN_OR_RETURN(auto j, ParseRecord(text, "node record"));
  return control::entry_json::DecodeNode(j, "node record");
}

std::string EncodeAttachmentRecord(const control::AttachmentEntry& a) {
  return Dump(control::entry_json::AttachmentJson(a));
}

Result<control::AttachmentEntry> DecodeAttachmentRecord(std::string_view text) {
  ASSIGN_OR_RETURN(auto j, ParseRecord(text, "attachment record"));
  return control::entry_json::DecodeAttachment(j, "attachment record");
}

Task<Status> RegisterNode(objstore::ObjectStore& root, control::NodeEntry node) {
  if (Status st = control::ValidateNodeId(node.node); !st.ok()) {
    co_return Status::InvalidArgument(fmt::format(
        "[control] node_id '{}' cannot name a node record ({})", node.node, st.message()));
  }
  const std::string key = NodeKey(node.node);
  Status st = co_await root.Put(key, EncodeNodeRecord(node));
  if (!st.ok()) co_return st.WithContext("writing the node record " + key);
  Log()->info("node record written node={} control={}", node.node, node.control);
  co_return Status::Ok();
}

Task<Result<std::optional<control::NodeEntry>>> FindNode(objstore::ObjectStore& root,
                                                         std::string node) {
  if (!control::ValidateNodeId(node).ok()) co_return std::optional<control::NodeEntry>();
  auto found = co_await Read<control::NodeEntry>(root, NodeKey(node), DecodeNodeRecord);
  if (found.ok() && *found && (*found)->node != node) {
    co_return Status::Corruption(fmt::format("{} names node '{}'", NodeKey(node), (*found)->node));
  }
  co_return found;
}

Task<Result<std::optional<control::AttachmentEntry>>> FindAttachment(objstore::ObjectStore& root,
                                                                     std::string volume) {
  auto found =
      co_await Read<control::AttachmentEntry>(root, AttachmentKey(volume), DecodeAttachmentRecord);
  if (found.ok() && *found && (*found)->volume != volume) {
    co_return Status::Corruption(
        fmt::format("{} names volume '{}'", AttachmentKey(volume), (*found)->volume));
  }
  co_return found;
}

Task<Result<PublishOutcome>> PublishVolume(objstore::ObjectStore& root,
                                           control::AttachmentEntry want) {
  const std::string key = AttachmentKey(want.volume);
  // Two tries: a conditional create that lost a race reads the winner's record.
  for (int tries = 0; tries < 2; ++tries) {
    CO_ASSIGN_OR_RETURN(auto existing, co_await FindAttachment(root, want.volume));
    if (existing) {
      PublishOutcome out{PublishOutcome::kPublished, *existing};
      if (existing->node != want.node) {
        out.kind = PublishOutcome::kOtherNode;
      } else if (existing->read_only != want.read_only) {
        out.kind = PublishOutcome::kOtherMode;
      }
      co_return out;
    }
    Status st = co_await root.PutIfAbsent(key, EncodeAttachmentRecord(want));
    if (st.ok()) {
      Log()->info("attachment record written volume={} node={} read_only={}", want.volume,
                  want.node, want.read_only);
      co_return PublishOutcome{PublishOutcome::kPublished, want};
    }
    if (!st.IsPreconditionFailed()) co_return st.WithContext("writing " + key);
  }
  co_return Status::Busy(
      fmt::format("volume {}: its attachment record keeps changing", want.volume));
}

Task<Result<bool>> UnpublishVolume(objstore::ObjectStore& root, std::string volume,
                                   std::string node) {
  CO_ASSIGN_OR_RETURN(auto existing, co_await FindAttachment(root, volume));
  if (!existing || (!node.empty() && existing->node != node)) co_return false;
  Status st = co_await root.Delete(AttachmentKey(volume));
  if (!st.ok() && !st.IsNotFound()) co_return st.WithContext("removing " + AttachmentKey(volume));
  Log()->info("attachment record removed volume={} node={}", volume, existing->node);
  co_return true;
}

}  // namespace portal::daemon
