// For the sealed-JSON decoders' fuzz targets (manifest_fuzz.cc, snapshot_fuzz.cc): the
// input's first byte is a mode; with bit 0 set, a JSON object in the rest is sealed
// again (json_seal.h) so mutations get past the checksum to the decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "volume/json_seal.h"

namespace portal::volume {

// The text to decode (empty input: nothing to do, the caller returns).
inline std::string FuzzJsonText(const uint8_t* data, size_t size) {
  const uint8_t mode = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode & 1) {
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) text = SealedDump(std::move(j));
  }
  return text;
}

}  // namespace portal::volume
