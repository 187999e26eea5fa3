// Rope: an object's bytes as pieces of memory that their owners keep alive, so that a
// store which holds objects in memory (memory://) can keep a segment without copying its
// parts into one string. Pieces are immutable once in a rope.
//
//   Rope r;
//   r.Append(slab_owner, std::string_view(slab, n));   // referenced, not copied
//   r.Append(std::make_shared<const std::string>(footer));
//   std::string all = r.Flatten(pool);                 // stores that need one buffer
//
// A rope made from one string (Rope(std::string)) hands that string back from
// std::move(rope).Flatten() without copying it: a segment built in one string (LZ4) goes
// to file:// and s3:// as it was built, and memory:// keeps it as a string it can recycle.
// A relocation's segment is a rope of views into the buffers its live blocks were read into.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portal {
class BufferPool;
}

namespace portal::objstore {

class Rope {
 public:
  struct Piece {
    std::shared_ptr<const void> owner;
    std::string_view bytes;
  };

  Rope() = default;
  // A rope of one string it owns.
  explicit Rope(std::string whole);

  // Adds `bytes`, which `owner` keeps valid and unchanged. A piece that continues the
  // last one in memory, with the same owner, extends it.
  void Append(std::shared_ptr<const void> owner, std::string_view bytes);
  // Adds a whole string (owned by the rope).
  void Append(std::shared_ptr<const std::string> s);

  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::vector<Piece>& pieces() const { return pieces_; }
  // Made from one string, nothing appended since.
  bool is_one_string() const { return whole_ != nullptr; }

  // The bytes [offset, offset + n), clipped to the rope's end.
  std::string Read(uint64_t offset, uint64_t n) const;
  // All bytes in one string, taken from `pool` (null: allocated).
  std::string Flatten(BufferPool* pool = nullptr) const&;
  // The same; a rope made from one string that no copy of the rope shares gives that
  // string back (no copy). The rope is left empty.
  std::string Flatten(BufferPool* pool = nullptr) &&;

 private:
  std::vector<Piece> pieces_;
  std::vector<uint64_t> starts_;  // offset of each piece, for Read's binary search
  uint64_t size_ = 0;
  std::shared_ptr<std::string> whole_;  // set while the rope is the string it was made of
};

}  // namespace portal::objstore
