// libFuzzer target volume_manifest (fuzz/README.md): manifest objects as a hostile or
// damaged store returns them. Bad JSON, wrong types and out-of-range values must be a
// Corruption, never a crash or an exception; a manifest that decodes must encode and
// decode back to itself (what portalbd writes next is what it read).
//
// Input: mode u8, then the JSON text. Mode bit 0: first reseal it (parse, recompute the
// "checksum" member) so that mutations reach the field checks instead of stopping at the
// seal (a hostile writer computes checksums too).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "util/assert.h"
#include "volume/fuzz_json.h"
#include "volume/manifest.h"

using namespace portal;
using namespace portal::volume;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text = FuzzJsonText(data, size);
  const std::string name = "manifest/fuzz.json";
  auto m = DecodeManifest(text, name);
  if (!m.ok()) {
    PORTAL_ASSERT(m.status().IsCorruption() || m.status().code() == Status::Code::kInvalidArgument,
                  "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  auto again = DecodeManifest(EncodeManifest(*m), name);
  PORTAL_ASSERT(again.ok(), "an encoded manifest does not decode");
  Manifest expect = *m;
  expect.format_version = kManifestFormatVersion;  // always written as the current one
  PORTAL_ASSERT(*again == expect, "manifest changed in a round trip");
  for (const auto& level : m->levels) {
    auto levels = DecodeLevels(EncodeLevels({level}), name);
    PORTAL_ASSERT(levels.ok() && levels->size() == 1 && levels->front() == level,
                  "levels changed in a round trip");
  }
  return 0;
}
