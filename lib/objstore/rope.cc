#include "objstore/rope.h"

#include <algorithm>

#include "util/buffer_pool.h"

namespace portal::objstore {

void Rope::Append(std::shared_ptr<const void> owner, std::string_view bytes) {
  if (bytes.empty()) return;
  if (!pieces_.empty()) {
    Piece& last = pieces_.back();
    if (last.owner == owner && last.bytes.data() + last.bytes.size() == bytes.data()) {
      last.bytes = std::string_view(last.bytes.data(), last.bytes.size() + bytes.size());
      size_ += bytes.size();
      return;
    }
  }
  starts_.push_back(size_);
  pieces_.push_back(Piece{std::move(owner), bytes});
  size_ += bytes.size();
}

void Rope::Append(std::shared_ptr<const std::string> s) {
  std::string_view bytes(*s);
  Append(std::move(s), bytes);
}

std::string Rope::Read(uint64_t offset, uint64_t n) const {
  std::string out;
  if (offset >= size_ || n == 0) return out;
  n = std::min(n, size_ - offset);
  out.reserve(n);
  // The last piece starting at or before `offset`.
  size_t i = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), offset) -
                                 starts_.begin()) - 1;
  for (; out.size() < n; ++i) {
    const uint64_t skip = offset + out.size() - starts_[i];
    out.append(pieces_[i].bytes.substr(skip, n - out.size()));
  }
  return out;
}

std::string Rope::Flatten() const {
  std::string out = BufferPool::Global().Take(size_);
  for (const Piece& p : pieces_) out.append(p.bytes);
  return out;
}

}  // namespace portal::objstore
