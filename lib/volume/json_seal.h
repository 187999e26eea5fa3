// A checksum inside a JSON object (manifests, snapshot objects): "checksum" holds the
// XXH3-64 (16 hex digits) of the object's canonical dump without that member.
// nlohmann::json keeps members sorted, so the dump of a parsed object is canonical: any
// change to a value or a name that still parses is caught, and whitespace is not part
// of the checked bytes. Internal to volume/.
#pragma once

#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/checksum.h"
#include "util/status.h"

namespace portal::volume {

inline std::string SealedDump(nlohmann::json j) {
  j.erase("checksum");
  const uint64_t sum = Checksum64(j.dump());
  j["checksum"] = fmt::format("{:016x}", sum);
  return j.dump();
}

// Verifies and removes "checksum". `what` names the object in the Corruption.
inline Status CheckSeal(nlohmann::json& j, const std::string& what) {
  auto it = j.find("checksum");
  if (it == j.end() || !it->is_string()) return Status::Corruption(what + ": checksum missing");
  const std::string stored = it->get<std::string>();
  j.erase(it);
  if (fmt::format("{:016x}", Checksum64(j.dump())) != stored) {
    return Status::Corruption(what + ": checksum mismatch");
  }
  return Status::Ok();
}

}  // namespace portal::volume
