#include "volume/snapshot.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/rfc3339.h"
#include "volume/json_seal.h"

namespace portal::volume {

using nlohmann::json;

std::string EncodeSnapshotObject(const SnapshotObject& s, const crypto::Keyring* keyring) {
  json j;
  j["format_version"] = 2;
  j["volume_uuid"] = s.volume_uuid;
  j["name"] = s.name;
  j["id"] = s.id;
  j["created_ns"] = s.created_ns;
  j["created"] = FormatRfc3339(s.created_ns);
  j["size_bytes"] = s.size_bytes;
  j["block_size"] = s.block_size;
  j["data_bytes"] = s.data_bytes;
  j["levels"] = json::parse(EncodeLevels(s.levels));
  j["segments"] = s.segments;
  if (keyring) return keyring->SealObject(crypto::Purpose::kJson, SealedDump(std::move(j)));
  return SealedDump(std::move(j));
}

Result<SnapshotObject> DecodeSnapshotObject(std::string_view sealed, const std::string& name,
                                            const crypto::Keyring* keyring) {
  ASSIGN_OR_RETURN(std::string text, crypto::OpenWholeObject(keyring, crypto::Purpose::kJson,
                                                             sealed, '{',
                                                             "snapshot object " + name));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return Status::Corruption(fmt::format("snapshot object {}: {}", name, what));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto u64 = [&](const char* k, uint64_t* out) -> Status {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_unsigned()) return bad(std::string(k) + " missing");
    *out = it->get<uint64_t>();
    return Status::Ok();
  };
  auto str = [&](const char* k, std::string* out) -> Status {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string()) return bad(std::string(k) + " missing");
    *out = it->get<std::string>();
    return Status::Ok();
  };
  SnapshotObject s;
  uint64_t version = 0, block_size = 0;
  RETURN_IF_ERROR(u64("format_version", &version));
  if (version != 1 && version != 2) return bad(fmt::format("unsupported format version {}", version));
  // Version 1 carried no checksum.
  if (version >= 2) RETURN_IF_ERROR(CheckSeal(j, "snapshot object " + name));
  RETURN_IF_ERROR(str("volume_uuid", &s.volume_uuid));
  RETURN_IF_ERROR(str("name", &s.name));
  RETURN_IF_ERROR(str("id", &s.id));
  auto created = j.find("created_ns");
  if (created == j.end() || !created->is_number_integer()) return bad("created_ns missing");
  s.created_ns = created->get<int64_t>();
  RETURN_IF_ERROR(u64("size_bytes", &s.size_bytes));
  RETURN_IF_ERROR(u64("block_size", &block_size));
  RETURN_IF_ERROR(u64("data_bytes", &s.data_bytes));
  s.block_size = static_cast<uint32_t>(block_size);
  auto levels = j.find("levels");
  auto segs = j.find("segments");
  if (levels == j.end() || !levels->is_array() || segs == j.end() || !segs->is_array()) {
    return bad("levels or segments missing");
  }
  ASSIGN_OR_RETURN(s.levels, DecodeLevels(levels->dump(), name));
  for (const auto& v : *segs) {
    if (!v.is_number_unsigned()) return bad("segment id is not a number");
    s.segments.push_back(v.get<uint64_t>());
  }
  return s;
}

Status ValidateSnapshotName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("snapshot name is empty");
  if (name.size() > 128) {
    return Status::InvalidArgument(
        fmt::format("snapshot name is {} bytes long; the limit is 128", name.size()));
  }
  for (char c : name) {
    if (c == '/' || c == '@') {
      return Status::InvalidArgument(
          fmt::format("snapshot name '{}' contains '{}', which is not allowed", name, c));
    }
    if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f) {
      return Status::InvalidArgument(fmt::format(
          "snapshot name '{}' contains whitespace or a non-printable character", name));
    }
  }
  return Status::Ok();
}

}  // namespace portal::volume
