#include "objstore/semantics.h"

#include <string>

namespace portal::objstore {

std::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kGet:
      return "GET";
    case OpKind::kHead:
      return "HEAD";
    case OpKind::kPut:
      return "PUT";
    case OpKind::kPutIfAbsent:
      return "PUT_IF_ABSENT";
    case OpKind::kDelete:
      return "DELETE";
    case OpKind::kList:
      return "LIST";
    case OpKind::kCheckAccess:
      return "CHECK_ACCESS";
  }
  return "?";
}

Status ValidateKey(std::string_view key) {
  if (key.empty()) return Status::InvalidArgument("empty object key");
  if (key.size() > kMaxKeyBytes) {
    return Status::InvalidArgument("object key of " + std::to_string(key.size()) +
                                   " bytes is longer than " + std::to_string(kMaxKeyBytes));
  }
  return Status::Ok();
}

Status ValidateRange(const std::optional<GetRange>& range) {
  if (range && range->length == 0) return Status::InvalidArgument("empty byte range");
  return Status::Ok();
}

Result<std::pair<uint64_t, uint64_t>> ResolveRange(uint64_t size,
                                                   const std::optional<GetRange>& range) {
  if (!range) return std::pair<uint64_t, uint64_t>{0, size};
  RETURN_IF_ERROR(ValidateRange(range));
  if (range->offset >= size) {
    return Status::InvalidArgument("byte range starts at " + std::to_string(range->offset) +
                                   ", at or past the end of a " + std::to_string(size) +
                                   "-byte object");
  }
  // offset < size here, so size - offset cannot underflow; this also absorbs overflow of
  // offset + length.
  uint64_t end = range->length >= size - range->offset ? size : range->offset + range->length;
  return std::pair<uint64_t, uint64_t>{range->offset, end};
}

}  // namespace portal::objstore
