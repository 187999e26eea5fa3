// Buffer: an owned, fixed-size byte array that is NOT zero-initialized (unlike
// std::string or std::vector), for I/O paths that fill every byte themselves.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace portal {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size) : data_(size ? new uint8_t[size] : nullptr), size_(size) {}
  // Adopts `data`, which must hold at least `size` bytes (util/buffer_recycler.h).
  Buffer(std::unique_ptr<uint8_t[]> data, size_t size) : data_(std::move(data)), size_(size) {}
  static Buffer Copy(std::string_view bytes) {
    Buffer b(bytes.size());
    if (!bytes.empty()) std::memcpy(b.data(), bytes.data(), bytes.size());
    return b;
  }

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<uint8_t> span() { return {data_.get(), size_}; }
  std::span<const uint8_t> span() const { return {data_.get(), size_}; }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data_.get()), size_};
  }
  // Forgets the tail (no reallocation).
  void Truncate(size_t size) {
    if (size < size_) size_ = size;
  }
  // Gives up the memory (the buffer is empty after).
  std::unique_ptr<uint8_t[]> Release() {
    size_ = 0;
    return std::move(data_);
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

}  // namespace portal
