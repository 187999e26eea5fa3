#include "objstore/rope.h"

#include <algorithm>

#include "util/buffer_pool.h"

namespace portal::objstore {

Rope::Rope(std::string whole) : whole_(std::make_shared<std::string>(std::move(whole))) {
  const std::string_view bytes(*whole_);
  if (!bytes.empty()) {
    starts_.push_back(0);
    pieces_.push_back(Piece{whole_, bytes});
    size_ = bytes.size();
  }
}

void Rope::Append(std::shared_ptr<const void> owner, std::string_view bytes) {
  if (bytes.empty()) return;
  whole_.reset();
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

std::string Rope::Flatten(BufferPool* pool) const& {
  std::string out = TakeFrom(pool, size_);
  for (const Piece& p : pieces_) out.append(p.bytes);
  return out;
}

std::string Rope::Flatten(BufferPool* pool) && {
  std::string out;
  // Held by whole_ and by the piece pointing into it (if not empty), and nothing else: no
  // copy of this rope can see the string move. (A copy being destroyed meanwhile can only
  // make the count look higher: then it is copied, which is always safe.)
  const long refs = pieces_.empty() ? 1 : 2;
  if (whole_ && whole_.use_count() == refs) {
    out = std::move(*whole_);
  } else {
    out = static_cast<const Rope&>(*this).Flatten(pool);
  }
  *this = Rope();
  return out;
}

}  // namespace portal::objstore
