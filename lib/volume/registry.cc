#include "volume/registry.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "objstore/conditional_create.h"
#include "volume/json_seal.h"

namespace portal::volume {

using nlohmann::json;

namespace {
constexpr std::string_view kRegistryPrefix = "registry/";
constexpr std::string_view kRecordSuffix = ".json";
constexpr size_t kMaxNameBytes = 63;
constexpr int kFormat = 1;
}  // namespace

Status ValidateVolumeName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("volume name is empty");
  if (name.size() > kMaxNameBytes) {
    return Status::InvalidArgument(fmt::format("volume name '{}' is {} bytes long; the limit is {}",
                                               name, name.size(), kMaxNameBytes));
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) {
    return Status::InvalidArgument(
        fmt::format("volume name '{}' must start with a lowercase letter or a digit", name));
  }
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') {
      return Status::InvalidArgument(fmt::format(
          "volume name '{}' may hold only lowercase letters, digits, '.', '_' and '-'", name));
    }
  }
  if (name == kDefaultVolumeName) {
    return Status::InvalidArgument(
        fmt::format("volume name '{}' is the default volume's", name));
  }
  return Status::Ok();
}

std::string VolumePrefix(std::string_view name) { return fmt::format("volumes/{}/", name); }

std::string RegistryKey(std::string_view name) {
  return fmt::format("{}{}{}", kRegistryPrefix, name, kRecordSuffix);
}

std::string EncodeVolumeRecord(const VolumeRecord& r) {
  json j;
  j["format"] = kFormat;
  j["name"] = r.name;
  j["size_bytes"] = r.size_bytes;
  j["block_size"] = r.block_size;
  j["created_ns"] = r.created_ns;
  if (r.clone_of) j["clone_of"] = {{"volume", r.clone_of->volume}, {"snapshot", r.clone_of->snapshot}};
  if (r.deleting) j["deleting"] = true;
  return SealedDump(std::move(j));
}

Result<VolumeRecord> DecodeVolumeRecord(std::string_view bytes, std::string_view name) {
  const std::string what = fmt::format("volume record of '{}'", name);
  json j = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption(what + ": not a JSON object");
  RETURN_IF_ERROR(CheckSeal(j, what));
  try {
    if (j.at("format").get<int>() > kFormat) {
      return Status::Corruption(fmt::format("{}: format {} is newer than this portalbd reads",
                                            what, j.at("format").get<int>()));
    }
    VolumeRecord r;
    r.name = j.at("name").get<std::string>();
    r.size_bytes = j.at("size_bytes").get<uint64_t>();
    r.block_size = j.at("block_size").get<uint32_t>();
    r.created_ns = j.at("created_ns").get<int64_t>();
    if (auto it = j.find("clone_of"); it != j.end()) {
      r.clone_of = CloneSource{it->at("volume").get<std::string>(),
                               it->at("snapshot").get<std::string>()};
    }
    r.deleting = j.value("deleting", false);
    if (r.name != name) return Status::Corruption(what + ": holds the name '" + r.name + "'");
    return r;
  } catch (const json::exception& e) {
    return Status::Corruption(what + ": " + e.what());
  }
}

Task<Status> Registry::Create(const VolumeRecord& record) {
  CO_RETURN_IF_ERROR(ValidateVolumeName(record.name));
  auto created = co_await objstore::CreateOrVerify(env_, store_, RegistryKey(record.name),
                                                   EncodeVolumeRecord(record));
  if (!created.ok()) co_return created.status().WithContext("volume " + record.name);
  if (*created == objstore::CreateOutcome::kTakenByOther) {
    co_return Status::PreconditionFailed(
        fmt::format("volume '{}' already exists", record.name));
  }
  co_return Status::Ok();
}

Task<Result<VolumeRecord>> Registry::Get(std::string name) {
  CO_RETURN_IF_ERROR(ValidateVolumeName(name));
  auto bytes = co_await store_.Get(RegistryKey(name));
  if (bytes.status().IsNotFound()) {
    co_return Status::NotFound(fmt::format("no volume named '{}'", name));
  }
  if (!bytes.ok()) co_return bytes.status().WithContext("volume " + name);
  co_return DecodeVolumeRecord(*bytes, name);
}

Task<Result<std::vector<std::string>>> Registry::ListNames() {
  auto listed = co_await store_.List(std::string(kRegistryPrefix));
  if (!listed.ok()) co_return listed.status().WithContext("listing volumes");
  std::vector<std::string> names;
  for (const auto& o : *listed) {
    std::string_view k = o.key;
    k.remove_prefix(kRegistryPrefix.size());
    if (!k.ends_with(kRecordSuffix)) continue;  // not ours: ignored
    k.remove_suffix(kRecordSuffix.size());
    if (ValidateVolumeName(k).ok()) names.emplace_back(k);
  }
  co_return names;
}

Task<Status> Registry::Update(const VolumeRecord& record) {
  CO_RETURN_IF_ERROR(ValidateVolumeName(record.name));
  co_return co_await store_.Put(RegistryKey(record.name), EncodeVolumeRecord(record));
}

Task<Status> Registry::Remove(std::string name) {
  CO_RETURN_IF_ERROR(ValidateVolumeName(name));
  co_return co_await store_.Delete(RegistryKey(name));
}

}  // namespace portal::volume
