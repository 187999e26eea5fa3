#include "csi/ids.h"

#include <openssl/evp.h>

#include "util/assert.h"
#include "volume/registry.h"
#include "volume/snapshot.h"

namespace portal::csi {
namespace {

std::string HashedName(std::string_view csi_name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = EVP_Digest(csi_name.data(), csi_name.size(), digest, &len, EVP_sha256(), nullptr);
  PORTAL_ASSERT(ok == 1 && len == 32, "EVP_Digest(SHA-256) failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "csi-";
  for (unsigned int i = 0; i < 16; ++i) {  // 32 hex digits
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace

std::string VolumeNameFor(std::string_view csi_name) {
  if (volume::ValidateVolumeName(csi_name).ok()) return std::string(csi_name);
  return HashedName(csi_name);
}

std::string SnapshotNameFor(std::string_view csi_name) {
  if (volume::ValidateSnapshotName(csi_name).ok() && !IsCloneSnapshot(csi_name)) {
    return std::string(csi_name);
  }
  return HashedName(csi_name);
}

std::string CloneSnapshotName(std::string_view clone) {
  return std::string(kCloneSnapshotPrefix) + std::string(clone);
}

bool IsCloneSnapshot(std::string_view snapshot) {
  return snapshot.starts_with(kCloneSnapshotPrefix);
}

bool IsVolumeId(std::string_view id) { return volume::ValidateVolumeName(id).ok(); }

std::string FormatSnapshotId(std::string_view volume, std::string_view snapshot) {
  return std::string(volume) + "@" + std::string(snapshot);
}

std::optional<SnapshotId> ParseSnapshotId(std::string_view id) {
  // Neither part may hold '@' (volume names are [a-z0-9._-], snapshot names refuse it).
  const size_t at = id.find('@');
  if (at == std::string_view::npos) return std::nullopt;
  SnapshotId out{std::string(id.substr(0, at)), std::string(id.substr(at + 1))};
  if (!IsVolumeId(out.volume) || !volume::ValidateSnapshotName(out.snapshot).ok()) {
    return std::nullopt;
  }
  return out;
}

bool HasBannedCharacter(std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c <= 0x08 || c == 0x0b || c == 0x0c || (c >= 0x0e && c <= 0x1f) || c == 0x7f) {
      return true;
    }
    // U+0080-U+009F in UTF-8: 0xC2 0x80..0x9F.
    if (c == 0xc2 && i + 1 < name.size()) {
      const auto n = static_cast<unsigned char>(name[i + 1]);
      if (n >= 0x80 && n <= 0x9f) return true;
    }
  }
  return false;
}

}  // namespace portal::csi
