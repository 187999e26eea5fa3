// Byte coding: fixed-width big-endian (NBD wire, network order) and little-endian
// (portalbd's own object formats), LEB128 varints, and a bounds-checked reader.
//
// Readers never trust their input: every Get* returns false on short input and leaves
// the reader unchanged, so a decoder can turn truncation into a Corruption status.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace portal {

// --- big-endian, raw pointers (caller guarantees space) ---
inline void StoreBE16(uint8_t* p, uint16_t v) {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, 2);
}
inline void StoreBE32(uint8_t* p, uint32_t v) {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
inline void StoreBE64(uint8_t* p, uint64_t v) {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}
inline uint16_t LoadBE16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return __builtin_bswap16(v);
}
inline uint32_t LoadBE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
inline uint64_t LoadBE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

// --- little-endian, raw pointers ---
inline void StoreLE32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void StoreLE64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t LoadLE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// --- appenders ---
inline void PutBE16(std::string* s, uint16_t v) {
  uint8_t b[2];
  StoreBE16(b, v);
  s->append(reinterpret_cast<char*>(b), 2);
}
inline void PutBE32(std::string* s, uint32_t v) {
  uint8_t b[4];
  StoreBE32(b, v);
  s->append(reinterpret_cast<char*>(b), 4);
}
inline void PutBE64(std::string* s, uint64_t v) {
  uint8_t b[8];
  StoreBE64(b, v);
  s->append(reinterpret_cast<char*>(b), 8);
}
inline void PutFixed32(std::string* s, uint32_t v) {
  s->append(reinterpret_cast<const char*>(&v), 4);
}
inline void PutFixed64(std::string* s, uint64_t v) {
  s->append(reinterpret_cast<const char*>(&v), 8);
}
void PutVarint64(std::string* s, uint64_t v);
// Length-prefixed (varint) byte string.
void PutLengthPrefixed(std::string* s, std::string_view v);

// Bounds-checked sequential reader over a byte string.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size(); }
  bool empty() const { return in_.empty(); }
  std::string_view rest() const { return in_; }

  bool GetBE16(uint16_t* v);
  bool GetBE32(uint32_t* v);
  bool GetBE64(uint64_t* v);
  bool GetFixed32(uint32_t* v);
  bool GetFixed64(uint64_t* v);
  bool GetVarint64(uint64_t* v);
  bool GetBytes(size_t n, std::string_view* v);
  bool GetLengthPrefixed(std::string_view* v);
  bool Skip(size_t n);

 private:
  std::string_view in_;
};

}  // namespace portal
