// The rules every store applies the same way (see object_store.h), in one place so that
// memory://, file:// and s3:// cannot drift apart.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "objstore/object_store.h"
#include "util/status.h"

namespace portal::objstore {

// InvalidArgument unless 1 <= key.size() <= kMaxKeyBytes.
Status ValidateKey(std::string_view key);

// InvalidArgument for a zero-length range. Checked before anything is fetched.
Status ValidateRange(const std::optional<GetRange>& range);

// The byte interval [first, second) that `range` selects in an object of `size` bytes:
// the whole object without a range; clipped at the end; InvalidArgument when the range
// starts at or past the end.
Result<std::pair<uint64_t, uint64_t>> ResolveRange(uint64_t size,
                                                   const std::optional<GetRange>& range);

// True if `key` belongs in List(prefix, start_after).
inline bool InListing(std::string_view key, std::string_view prefix, std::string_view start_after) {
  return key.starts_with(prefix) && key > start_after;
}

}  // namespace portal::objstore
