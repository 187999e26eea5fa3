#include "volume/manifest.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/rfc3339.h"
#include "volume/json_seal.h"

namespace portal::volume {
namespace {

using nlohmann::json;

// Reads a field without letting nlohmann throw: every type is checked first.
class Fields {
 public:
  Fields(const json& j, const std::string& name) : j_(j), name_(name) {}
  Status U64(const char* key, uint64_t* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_number_unsigned()) return Missing(key, "an unsigned integer");
    *out = it->get<uint64_t>();
    return Status::Ok();
  }
  Status I64(const char* key, int64_t* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_number_integer()) return Missing(key, "an integer");
    *out = it->get<int64_t>();
    return Status::Ok();
  }
  Status Str(const char* key, std::string* out) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_string()) return Missing(key, "a string");
    *out = it->get<std::string>();
    return Status::Ok();
  }
  Result<const json*> Array(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || !it->is_array()) return Missing(key, "an array");
    return &*it;
  }
  Status Missing(const char* key, const char* what) const {
    return Status::Corruption(fmt::format("manifest {}: field '{}' is missing or not {}", name_,
                                          key, what));
  }

 private:
  const json& j_;
  const std::string& name_;
};

Result<SstRef> DecodeSst(const json& j, const std::string& name) {
  if (!j.is_object()) return Status::Corruption("manifest " + name + ": SST entry is not an object");
  Fields f(j, name);
  SstRef s;
  RETURN_IF_ERROR(f.Str("key", &s.key));
  RETURN_IF_ERROR(f.U64("min", &s.min_block));
  RETURN_IF_ERROR(f.U64("end", &s.end_block));
  RETURN_IF_ERROR(f.U64("size", &s.size_bytes));
  RETURN_IF_ERROR(f.U64("extents", &s.extent_count));
  RETURN_IF_ERROR(f.U64("data_blocks", &s.data_blocks));
  if (s.end_block <= s.min_block || !s.key.starts_with("map/")) {
    return Status::Corruption("manifest " + name + ": bad SST entry " + s.key);
  }
  return s;
}

json LevelsJson(const std::vector<std::vector<SstRef>>& levels) {
  json out = json::array();
  for (const auto& level : levels) {
    json l = json::array();
    for (const SstRef& s : level) {
      l.push_back({{"key", s.key},
                   {"min", s.min_block},
                   {"end", s.end_block},
                   {"size", s.size_bytes},
                   {"extents", s.extent_count},
                   {"data_blocks", s.data_blocks}});
    }
    out.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<std::vector<SstRef>>> LevelsFromJson(const json& levels,
                                                        const std::string& name) {
  std::vector<std::vector<SstRef>> out;
  if (!levels.is_array()) return Status::Corruption(name + ": levels is not an array");
  for (const json& level : levels) {
    if (!level.is_array()) return Status::Corruption(name + ": a level is not an array");
    out.emplace_back();
    for (const json& s : level) {
      ASSIGN_OR_RETURN(SstRef ref, DecodeSst(s, name));
      out.back().push_back(std::move(ref));
    }
  }
  return out;
}

}  // namespace

std::string EncodeLevels(const std::vector<std::vector<SstRef>>& levels) {
  return LevelsJson(levels).dump();
}

Result<std::vector<std::vector<SstRef>>> DecodeLevels(std::string_view text,
                                                      const std::string& name) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption(name + ": levels are not JSON");
  return LevelsFromJson(j, name);
}

std::string EncodeManifest(const Manifest& m, const crypto::Keyring* keyring) {
  json j;
  j["format_version"] = m.format_version;
  j["volume_uuid"] = m.volume_uuid;
  j["size_bytes"] = m.size_bytes;
  j["block_size"] = m.block_size;
  j["epoch"] = m.epoch;
  j["epoch_manifest"] = m.epoch_manifest;
  j["next_segment_id"] = m.next_segment_id;
  j["next_seq"] = m.next_seq;
  j["applied_segment"] = m.applied_segment;
  j["applied_seq"] = m.applied_seq;
  if (m.upload_window > 1) j["upload_window"] = m.upload_window;
  j["levels"] = LevelsJson(m.levels);
  json snaps = json::array();
  for (const SnapshotRef& s : m.snapshots) {
    snaps.push_back({{"name", s.name},
                     {"id", s.id},
                     {"created_ns", s.created_ns},
                     {"created", FormatRfc3339(s.created_ns)},
                     {"key", s.key}});
  }
  j["snapshots"] = std::move(snaps);
  // Always "": no segment table object exists (docs/volume.md "Manifest"). Written still
  // because portalbd before 2026-12-07 requires the field: without it a rollback to an
  // older binary would refuse the volume as Corruption.
  j["segtab"] = "";
  j["format_version"] = kManifestFormatVersion;
  if (keyring) return keyring->SealObject(crypto::Purpose::kJson, SealedDump(std::move(j)));
  return SealedDump(std::move(j));
}

Result<Manifest> DecodeManifest(std::string_view sealed, const std::string& name,
                                const crypto::Keyring* keyring) {
  ASSIGN_OR_RETURN(std::string text, crypto::OpenWholeObject(keyring, crypto::Purpose::kJson,
                                                             sealed, '{', "manifest " + name));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("manifest " + name + " is not a JSON object");
  }
  Fields f(j, name);
  Manifest m;
  uint64_t block_size = 0;
  RETURN_IF_ERROR(f.U64("format_version", &m.format_version));
  if (m.format_version != 1 && m.format_version != kManifestFormatVersion) {
    return Status::Corruption(fmt::format("manifest {}: unsupported format version {}", name,
                                          m.format_version));
  }
  // Version 1 carried no checksum (a flipped digit could pass as another number).
  if (m.format_version >= 2) RETURN_IF_ERROR(CheckSeal(j, "manifest " + name));
  RETURN_IF_ERROR(f.Str("volume_uuid", &m.volume_uuid));
  RETURN_IF_ERROR(f.U64("size_bytes", &m.size_bytes));
  RETURN_IF_ERROR(f.U64("block_size", &block_size));
  RETURN_IF_ERROR(f.U64("epoch", &m.epoch));
  RETURN_IF_ERROR(f.U64("epoch_manifest", &m.epoch_manifest));
  RETURN_IF_ERROR(f.U64("next_segment_id", &m.next_segment_id));
  RETURN_IF_ERROR(f.U64("next_seq", &m.next_seq));
  RETURN_IF_ERROR(f.U64("applied_segment", &m.applied_segment));
  RETURN_IF_ERROR(f.U64("applied_seq", &m.applied_seq));
  if (j.contains("upload_window")) {
    RETURN_IF_ERROR(f.U64("upload_window", &m.upload_window));
    if (m.upload_window == 0 || m.upload_window > kMaxUploadWindow) {
      return Status::Corruption(fmt::format("manifest {}: upload_window {} out of range", name,
                                            m.upload_window));
    }
  }
  if (block_size < 512 || block_size > 65536 || (block_size & (block_size - 1)) ||
      m.size_bytes == 0 || m.size_bytes % block_size != 0 ||
      m.applied_segment >= m.next_segment_id) {
    return Status::Corruption("manifest " + name + ": inconsistent sizes or ids");
  }
  m.block_size = static_cast<uint32_t>(block_size);
  ASSIGN_OR_RETURN(const json* levels, f.Array("levels"));
  ASSIGN_OR_RETURN(m.levels, LevelsFromJson(*levels, name));
  ASSIGN_OR_RETURN(const json* snaps, f.Array("snapshots"));
  for (const json& s : *snaps) {
    if (!s.is_object()) return Status::Corruption("manifest " + name + ": bad snapshot entry");
    Fields sf(s, name);
    SnapshotRef r;
    RETURN_IF_ERROR(sf.Str("name", &r.name));
    RETURN_IF_ERROR(sf.Str("id", &r.id));
    RETURN_IF_ERROR(sf.I64("created_ns", &r.created_ns));
    RETURN_IF_ERROR(sf.Str("key", &r.key));
    m.snapshots.push_back(std::move(r));
  }
  return m;
}

std::string ManifestKey(uint64_t number) { return fmt::format("manifest/{:020d}.json", number); }
std::string SegmentKey(uint64_t id) { return fmt::format("seg/{:020d}.seg", id); }
std::string SstKey(uint64_t epoch, uint64_t n) {
  return fmt::format("map/{:010d}-{:010d}.sst", epoch, n);
}
std::string SnapshotKey(const std::string& uuid) { return "snap/" + uuid + ".json"; }

namespace {
bool ParseNumbered(std::string_view key, std::string_view prefix, std::string_view suffix,
                   uint64_t* out) {
  if (!key.starts_with(prefix) || !key.ends_with(suffix)) return false;
  std::string_view digits = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
  if (digits.size() != 20) return false;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *out);
  return ec == std::errc() && p == digits.data() + digits.size();
}
}  // namespace

bool ParseManifestKey(std::string_view key, uint64_t* number) {
  return ParseNumbered(key, "manifest/", ".json", number);
}
bool ParseSegmentKey(std::string_view key, uint64_t* id) {
  return ParseNumbered(key, "seg/", ".seg", id);
}

std::string MakeUuid(uint64_t a, uint64_t b) {
  a = (a & ~0xf000ULL) | 0x4000ULL;                        // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff,
                     a & 0xffff, b >> 48, b & 0xffffffffffffULL);
}

}  // namespace portal::volume
