// WriteBuffer: the blocks written since the last seal, in memory, and the extents they
// form. The active buffer takes writes under the volume lock; a sealed buffer is
// immutable (readable from any thread) while it is encoded, uploaded as a segment and
// applied to the map.
//
// Storage is a list of slabs of block slots: 1 MiB slabs the buffer owns and copies
// into, and adopted slabs, which are a writer's own immutable memory (a large NBD WRITE
// payload) kept by reference instead of copied. Rewriting a block that already has a
// slot in an owned slab reuses the slot in place; otherwise new slots are taken (the
// old ones become garbage until the seal, and are counted in bytes()).
//
// Not thread-safe while active (the volume's lock guards it); safe to read concurrently
// once sealed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lsm/extent.h"
#include "objstore/rope.h"
#include "util/buffer_recycler.h"
#include "util/range_map.h"
#include "volume/segment_format.h"

namespace portal::volume {

class WriteBuffer {
 public:
  // With `blocks_per_chunk`, adopted writes get their chunk checksums as they arrive (in
  // cache), and Contents passes them on where the stream's chunks line up with the writes.
  // Owned slabs come from `recycler` (util/buffer_recycler.h) when given; it must outlive
  // the buffer (its slabs may outlive both).
  explicit WriteBuffer(uint32_t block_size, uint32_t blocks_per_chunk = 0,
                       BufferRecycler* recycler = nullptr);
  WriteBuffer(const WriteBuffer&) = delete;
  WriteBuffer& operator=(const WriteBuffer&) = delete;

  // Writes `n` whole blocks from `data` (n * block_size bytes). All-zero blocks become
  // Zero runs and take no slot. With `keep`, the caller promises that `data` stays valid
  // and unchanged while `keep` lives: runs of at least kAdoptMinBytes are then kept by
  // reference (the buffer holds `keep`) instead of copied. Adopted memory is never
  // written to.
  void WriteBlocks(uint64_t first_block, const uint8_t* data, uint64_t n, uint64_t seq,
                   const std::shared_ptr<const void>& keep = nullptr);
  static constexpr uint64_t kAdoptMinBytes = 64 * 1024;
  // Maps [first, end) to Zero or Hole.
  void WriteZeroRun(uint64_t first, uint64_t end, lsm::LocKind kind, uint64_t seq);

  // A piece of the buffer's content: `data` points at (end - first) consecutive blocks,
  // or is null for Zero/Hole runs (`kind`).
  struct Piece {
    uint64_t first;
    uint64_t end;
    lsm::LocKind kind;
    const uint8_t* data;
  };
  // Calls fn for each piece the buffer defines in [first, end), in order. Gaps are
  // blocks this buffer never wrote. Stops when fn returns false.
  void ForEach(uint64_t first, uint64_t end, const std::function<bool(const Piece&)>& fn) const;

  // The segment this buffer becomes, for EncodeSegment: fills footer's extents,
  // data_blocks and sequence range (ids come from the caller: segment_id, epoch,
  // block_size, blocks_per_chunk must be set) and returns the data stream (live blocks in
  // ascending block order) as a Rope of this buffer's slabs and adopted writes (kept alive
  // by the rope: no copy), with the chunk checksums the adopted writes already have.
  // Memory that is mostly garbage (live under 3/4) is copied out instead, so that a
  // store keeping the rope does not keep dead blocks.
  SegmentContents Contents(SegmentFooter* footer) const;

  bool empty() const { return map_.empty(); }
  // Memory held: allocated slots (live or garbage) times the block size, plus what the
  // adopted writes hold beyond their adopted runs (their zero blocks).
  uint64_t bytes() const { return slots_used_ * uint64_t{block_size_} + adopted_extra_; }
  uint64_t first_seq() const { return first_seq_; }
  uint64_t last_seq() const { return last_seq_; }
  uint64_t extent_count() const { return map_.size(); }

 private:
  struct Slot {
    lsm::LocKind kind = lsm::LocKind::kHole;
    uint64_t slot = 0;  // kData: first slot; runs take consecutive slots
    Slot Slice(uint64_t skip) const {
      return kind == lsm::LocKind::kData ? Slot{kind, slot + skip} : *this;
    }
    bool Continues(uint64_t len, const Slot& next) const {
      if (kind != next.kind) return false;
      return kind != lsm::LocKind::kData || slot + len == next.slot;
    }
  };

  struct Slab {
    std::shared_ptr<const void> owner;  // keeps `base` alive: `owned`, or an adopted write's
    std::shared_ptr<Buffer> owned;      // set for a slab this buffer copies into
    const uint8_t* base = nullptr;
    uint64_t owner_blocks = 0;          // adopted: the size of the write it came in
    std::vector<uint64_t> chunk_sums;   // adopted: Checksum64 of each whole chunk
  };
  // Fills footer's extents, data_blocks and sequence range; calls emit(slab, data, len)
  // for each run of the data stream, in order.
  template <typename Emit>
  void BuildStream(SegmentFooter* footer, Emit&& emit) const;

  const uint8_t* SlotData(uint64_t slot) const;
  uint8_t* OwnedSlot(uint64_t slot);  // asserts the slot is in an owned slab
  uint64_t AllocateSlots(uint64_t n);  // n consecutive slots within one owned slab
  // True when every block of [first, first + n) has a slot in an owned slab.
  bool InPlace(uint64_t first, uint64_t n) const;
  void WriteDataRun(uint64_t first, const uint8_t* data, uint64_t n);
  void AdoptDataRun(uint64_t first, const uint8_t* data, uint64_t n, uint64_t owner_blocks,
                    const std::shared_ptr<const void>& keep);
  void NoteSeq(uint64_t seq);

  const uint32_t block_size_;
  const uint32_t chunk_blocks_;
  BufferRecycler* const recycler_;
  const uint64_t slab_blocks_;
  std::vector<Slab> slabs_;
  int64_t fill_slab_ = -1;   // the owned slab new slots come from (-1: none yet)
  uint64_t slab_fill_ = 0;   // slots used in it
  uint64_t adopted_extra_ = 0;
  uint64_t slots_used_ = 0;  // slots handed out (live or garbage)
  RangeMap<Slot> map_;
  uint64_t first_seq_ = 0;
  uint64_t last_seq_ = 0;
};

}  // namespace portal::volume
