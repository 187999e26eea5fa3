#include "util/checksum.h"

#include <xxhash.h>

namespace portal {

uint64_t Checksum64(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }
uint64_t Checksum64(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace portal
