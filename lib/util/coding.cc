#include "util/coding.h"

namespace portal {

void PutVarint64(std::string* s, uint64_t v) {
  while (v >= 0x80) {
    s->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  s->push_back(static_cast<char>(v));
}

void PutLengthPrefixed(std::string* s, std::string_view v) {
  PutVarint64(s, v.size());
  s->append(v);
}

bool ByteReader::GetBE16(uint16_t* v) {
  if (in_.size() < 2) return false;
  *v = LoadBE16(reinterpret_cast<const uint8_t*>(in_.data()));
  in_.remove_prefix(2);
  return true;
}

bool ByteReader::GetBE32(uint32_t* v) {
  if (in_.size() < 4) return false;
  *v = LoadBE32(reinterpret_cast<const uint8_t*>(in_.data()));
  in_.remove_prefix(4);
  return true;
}

bool ByteReader::GetBE64(uint64_t* v) {
  if (in_.size() < 8) return false;
  *v = LoadBE64(reinterpret_cast<const uint8_t*>(in_.data()));
  in_.remove_prefix(8);
  return true;
}

bool ByteReader::GetFixed32(uint32_t* v) {
  if (in_.size() < 4) return false;
  *v = LoadLE32(reinterpret_cast<const uint8_t*>(in_.data()));
  in_.remove_prefix(4);
  return true;
}

bool ByteReader::GetFixed64(uint64_t* v) {
  if (in_.size() < 8) return false;
  *v = LoadLE64(reinterpret_cast<const uint8_t*>(in_.data()));
  in_.remove_prefix(8);
  return true;
}

bool ByteReader::GetVarint64(uint64_t* v) {
  uint64_t result = 0;
  for (size_t i = 0; i < in_.size() && i < 10; ++i) {
    uint64_t byte = static_cast<uint8_t>(in_[i]);
    if (i == 9 && byte > 1) return false;  // would overflow 64 bits
    result |= (byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      *v = result;
      in_.remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

bool ByteReader::GetBytes(size_t n, std::string_view* v) {
  if (in_.size() < n) return false;
  *v = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}

bool ByteReader::GetLengthPrefixed(std::string_view* v) {
  ByteReader saved = *this;
  uint64_t n;
  if (!GetVarint64(&n) || n > in_.size()) {
    *this = saved;
    return false;
  }
  return GetBytes(static_cast<size_t>(n), v);
}

bool ByteReader::Skip(size_t n) {
  if (in_.size() < n) return false;
  in_.remove_prefix(n);
  return true;
}

}  // namespace portal
