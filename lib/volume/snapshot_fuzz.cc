// libFuzzer target volume_snapshot (fuzz/README.md): snapshot objects (snap/<uuid>.json)
// as a hostile or damaged store returns them. Bad JSON, wrong types and out-of-range
// values must be a Corruption, never a crash or an exception; an object that decodes
// must encode and decode back to itself.
//
// Input: mode u8, then the JSON text. Mode bit 0: first reseal it (see manifest_fuzz.cc).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "util/assert.h"
#include "volume/fuzz_json.h"
#include "volume/snapshot.h"

using namespace portal;
using namespace portal::volume;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text = FuzzJsonText(data, size);
  const std::string name = "snap/fuzz.json";
  auto s = DecodeSnapshotObject(text, name);
  if (!s.ok()) {
    PORTAL_ASSERT(s.status().IsCorruption() || s.status().code() == Status::Code::kInvalidArgument,
                  "not Corruption, nor InvalidArgument (an encrypted object, no key)");
    return 0;
  }
  auto again = DecodeSnapshotObject(EncodeSnapshotObject(*s), name);
  PORTAL_ASSERT(again.ok(), "an encoded snapshot object does not decode");
  PORTAL_ASSERT(again->volume_uuid == s->volume_uuid && again->name == s->name &&
                    again->id == s->id && again->created_ns == s->created_ns &&
                    again->size_bytes == s->size_bytes && again->block_size == s->block_size &&
                    again->data_bytes == s->data_bytes && again->levels == s->levels &&
                    again->segments == s->segments,
                "snapshot object changed in a round trip");
  return 0;
}
