// Checksums for stored bytes: XXH3-64 (libxxhash). Every object format stores one per
// chunk or block and verifies it on read.
#pragma once

#include <cstdint>
#include <string_view>

namespace portal {

uint64_t Checksum64(std::string_view data);
uint64_t Checksum64(const void* data, size_t size);

}  // namespace portal
