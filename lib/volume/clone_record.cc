// clone.json and the keys of the clone protocol (clone.h).
//
//   clone.json (the clone's store; immutable, created with PutIfAbsent):
//   {"format_version": 1, "checksum": "…", "name": "child", "parent": "base",
//    "snapshot": "gold", "snapshot_id": "<uuid>", "snapshot_key": "snap/<uuid>.json",
//    "created_ns": 1767755083123456789}
//
// A reference (clones/<snapshot-id>/<child>), a delete mark (clones/<snapshot-id>.deleting)
// and the tombstone (deleted.json) are small JSON objects whose existence is what counts;
// their bodies ({"clone": …} / {"deleting_ns": …} / {"deleted_ns": …}) are for people.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "volume/clone.h"
#include "volume/json_seal.h"

namespace portal::volume {

using nlohmann::json;

std::string EncodeCloneRecord(const CloneRecord& r) {
  json j;
  j["format_version"] = 1;
  j["name"] = r.name;
  j["parent"] = r.parent;
  j["snapshot"] = r.snapshot;
  j["snapshot_id"] = r.snapshot_id;
  j["snapshot_key"] = r.snapshot_key;
  j["created_ns"] = r.created_ns;
  return SealedDump(std::move(j));
}

Result<CloneRecord> DecodeCloneRecord(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [](const std::string& what) {
    return Status::Corruption(fmt::format("clone record {}: {}", kCloneRecordKey, what));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto version = j.find("format_version");
  if (version == j.end() || !version->is_number_unsigned() || version->get<uint64_t>() != 1) {
    return bad("unsupported format version");
  }
  RETURN_IF_ERROR(CheckSeal(j, fmt::format("clone record {}", kCloneRecordKey)));
  CloneRecord r;
  for (auto [k, out] :
       {std::pair{"name", &r.name}, std::pair{"parent", &r.parent},
        std::pair{"snapshot", &r.snapshot}, std::pair{"snapshot_id", &r.snapshot_id},
        std::pair{"snapshot_key", &r.snapshot_key}}) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
      return bad(std::string(k) + " missing");
    }
    *out = it->get<std::string>();
  }
  auto created = j.find("created_ns");
  if (created == j.end() || !created->is_number_integer()) return bad("created_ns missing");
  r.created_ns = created->get<int64_t>();
  return r;
}

std::string CloneRefPrefix(const std::string& snapshot_id) { return "clones/" + snapshot_id + "/"; }
std::string CloneRefKey(const std::string& snapshot_id, const std::string& child) {
  return CloneRefPrefix(snapshot_id) + child;
}
std::string SnapshotDeletingKey(const std::string& snapshot_id) {
  return "clones/" + snapshot_id + ".deleting";
}
std::string SnapshotDeletingKey(const std::string& snapshot_id, uint64_t epoch) {
  return fmt::format("clones/{}.{:020}.deleting", snapshot_id, epoch);
}
std::string SnapshotDeletingPrefix(const std::string& snapshot_id) {
  return "clones/" + snapshot_id + ".";
}
bool ParseSnapshotDeletingKey(std::string_view key, std::string* snapshot_id, uint64_t* epoch) {
  static constexpr std::string_view kPrefix = "clones/", kSuffix = ".deleting";
  if (!key.starts_with(kPrefix) || !key.ends_with(kSuffix)) return false;
  std::string_view mid = key.substr(kPrefix.size(), key.size() - kPrefix.size() - kSuffix.size());
  if (mid.empty() || mid.find('/') != std::string_view::npos) return false;  // a reference
  *epoch = 0;  // the mark of an earlier version: no epoch
  const size_t dot = mid.rfind('.');
  if (dot != std::string_view::npos) {
    const std::string_view digits = mid.substr(dot + 1);
    if (digits.size() != 20 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    *epoch = std::stoull(std::string(digits));
    mid = mid.substr(0, dot);
  }
  if (mid.empty()) return false;
  *snapshot_id = std::string(mid);
  return true;
}

}  // namespace portal::volume
