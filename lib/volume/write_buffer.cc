#include "volume/write_buffer.h"

#include <cstring>
#include <unordered_map>

#include "util/checksum.h"

namespace portal::volume {
namespace {

constexpr uint64_t kSlabBytes = 1 << 20;

bool AllZero(const uint8_t* p, size_t n) {
  // Word-at-a-time; blocks are at least 512 bytes and slabs are 8-byte aligned, but the
  // caller's data may not be: memcpy keeps the loads legal.
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != 0) return false;
  }
  return true;
}

// A run of the data stream taken whole from an adopted write whose chunk checksums were
// computed on arrival.
struct SummedRun {
  uint64_t stream_pos;
  uint64_t len;
  const std::vector<uint64_t>* sums;  // of the write's whole chunks, from its start
  uint64_t write_offset;              // bytes into the write
};

// The checksum of each whole chunk of a stream of `stream_bytes` that lies inside one
// of `runs` at a chunk boundary of its write; the others are left for the encoder.
std::vector<std::optional<uint64_t>> KnownChunkSums(uint64_t stream_bytes, uint64_t chunk_bytes,
                                                    const std::vector<SummedRun>& runs) {
  std::vector<std::optional<uint64_t>> out;
  if (runs.empty()) return out;
  out.resize((stream_bytes + chunk_bytes - 1) / chunk_bytes);
  size_t r = 0;
  for (uint64_t pos = 0; pos + chunk_bytes <= stream_bytes; pos += chunk_bytes) {
    while (r < runs.size() && runs[r].stream_pos + runs[r].len <= pos) ++r;
    if (r == runs.size()) break;
    if (runs[r].stream_pos <= pos && pos + chunk_bytes <= runs[r].stream_pos + runs[r].len) {
      const uint64_t at = runs[r].write_offset + (pos - runs[r].stream_pos);
      if (at % chunk_bytes == 0 && at / chunk_bytes < runs[r].sums->size()) {
        out[pos / chunk_bytes] = (*runs[r].sums)[at / chunk_bytes];
      }
    }
  }
  return out;
}

}  // namespace

WriteBuffer::WriteBuffer(uint32_t block_size, uint32_t blocks_per_chunk,
                         BufferRecycler* recycler)
    : block_size_(block_size),
      chunk_blocks_(blocks_per_chunk),
      recycler_(recycler),
      slab_blocks_(std::max<uint64_t>(1, kSlabBytes / block_size)) {}

// Slot ids are (slab << 32 | offset), so runs in different slabs never look
// consecutive to RangeMap and a run's blocks are always contiguous in memory.
const uint8_t* WriteBuffer::SlotData(uint64_t slot) const {
  return slabs_[slot >> 32].base + (slot & 0xffffffffu) * block_size_;
}

uint8_t* WriteBuffer::OwnedSlot(uint64_t slot) {
  const Slab& slab = slabs_[slot >> 32];
  PORTAL_ASSERT(slab.owned, "writing into adopted memory");
  return slab.owned->data() + (slot & 0xffffffffu) * block_size_;
}

uint64_t WriteBuffer::AllocateSlots(uint64_t n) {
  PORTAL_ASSERT(n <= slab_blocks_, "run larger than a slab");
  if (fill_slab_ < 0 || slab_fill_ + n > slab_blocks_) {
    Slab slab;
    slab.owned = TakeBuffer(recycler_, slab_blocks_ * block_size_);
    slab.owner = slab.owned;
    slab.base = slab.owned->data();
    slabs_.push_back(std::move(slab));
    fill_slab_ = static_cast<int64_t>(slabs_.size() - 1);
    slab_fill_ = 0;
  }
  uint64_t slot = (static_cast<uint64_t>(fill_slab_) << 32) | slab_fill_;
  slab_fill_ += n;
  slots_used_ += n;
  return slot;
}

void WriteBuffer::NoteSeq(uint64_t seq) {
  if (first_seq_ == 0 || seq < first_seq_) first_seq_ = seq;
  if (seq > last_seq_) last_seq_ = seq;
}

bool WriteBuffer::InPlace(uint64_t first, uint64_t n) const {
  uint64_t covered = 0;
  bool ok = true;
  map_.ForEach(first, first + n, [&](uint64_t b, uint64_t e, const Slot& s) {
    ok = s.kind == lsm::LocKind::kData && slabs_[s.slot >> 32].owned;
    covered += e - b;
    return ok;
  });
  return ok && covered == n;
}

void WriteBuffer::WriteDataRun(uint64_t first, const uint8_t* data, uint64_t n) {
  // In place where every block already has a slot here; else fresh slots.
  if (InPlace(first, n)) {
    map_.ForEach(first, first + n, [&](uint64_t b, uint64_t e, const Slot& s) {
      std::memcpy(OwnedSlot(s.slot), data + (b - first) * block_size_,
                  (e - b) * block_size_);
      return true;
    });
    return;
  }
  uint64_t done = 0;
  while (done < n) {
    uint64_t chunk = std::min(n - done, slab_blocks_);
    uint64_t slot = AllocateSlots(chunk);
    std::memcpy(OwnedSlot(slot), data + done * block_size_,
                chunk * block_size_);
    map_.Assign(first + done, first + done + chunk, Slot{lsm::LocKind::kData, slot});
    done += chunk;
  }
}

void WriteBuffer::AdoptDataRun(uint64_t first, const uint8_t* data, uint64_t n,
                               uint64_t owner_blocks, const std::shared_ptr<const void>& keep) {
  PORTAL_ASSERT(n <= 0xffffffffu, "adopted run too long for a slot id");
  Slab slab{keep, nullptr, data, owner_blocks, {}};
  if (chunk_blocks_ > 0) {
    const size_t chunk_bytes = size_t{chunk_blocks_} * block_size_;
    for (uint64_t b = 0; b + chunk_blocks_ <= n; b += chunk_blocks_) {
      slab.chunk_sums.push_back(Checksum64(data + b * block_size_, chunk_bytes));
    }
  }
  slabs_.push_back(std::move(slab));
  slots_used_ += n;
  map_.Assign(first, first + n, Slot{lsm::LocKind::kData, uint64_t{slabs_.size() - 1} << 32});
}

void WriteBuffer::WriteBlocks(uint64_t first_block, const uint8_t* data, uint64_t n,
                              uint64_t seq, const std::shared_ptr<const void>& keep) {
  NoteSeq(seq);
  const uint64_t adopt_min = std::max<uint64_t>(1, kAdoptMinBytes / block_size_);
  uint64_t adopted = 0;
  // Split into runs of zero and non-zero blocks.
  uint64_t i = 0;
  while (i < n) {
    bool zero = AllZero(data + i * block_size_, block_size_);
    uint64_t j = i + 1;
    while (j < n && AllZero(data + j * block_size_, block_size_) == zero) ++j;
    if (zero) {
      map_.Assign(first_block + i, first_block + j, Slot{lsm::LocKind::kZero, 0});
    } else if (keep && j - i >= adopt_min && !InPlace(first_block + i, j - i)) {
      AdoptDataRun(first_block + i, data + i * block_size_, j - i, n, keep);
      adopted += j - i;
    } else {
      WriteDataRun(first_block + i, data + i * block_size_, j - i);
    }
    i = j;
  }
  // The adopted memory is all of `data`, not only its adopted runs.
  if (adopted > 0) adopted_extra_ += (n - adopted) * block_size_;
}

void WriteBuffer::WriteZeroRun(uint64_t first, uint64_t end, lsm::LocKind kind, uint64_t seq) {
  PORTAL_ASSERT(kind != lsm::LocKind::kData, "zero run with data kind");
  NoteSeq(seq);
  map_.Assign(first, end, Slot{kind, 0});
}

void WriteBuffer::ForEach(uint64_t first, uint64_t end,
                          const std::function<bool(const Piece&)>& fn) const {
  map_.ForEach(first, end, [&](uint64_t b, uint64_t e, const Slot& s) {
    return fn(Piece{b, e, s.kind, s.kind == lsm::LocKind::kData ? SlotData(s.slot) : nullptr});
  });
}

template <typename Emit>
void WriteBuffer::BuildStream(SegmentFooter* footer, Emit&& emit) const {
  footer->extents.clear();
  footer->first_seq = first_seq_;
  footer->last_seq = last_seq_;
  uint64_t index = 0;
  for (const auto& [b, r] : map_.map()) {
    const uint64_t len = r.end - b;
    lsm::Loc loc;
    if (r.value.kind == lsm::LocKind::kData) {
      emit(slabs_[r.value.slot >> 32], SlotData(r.value.slot), len * block_size_);
      loc = lsm::Loc::Data(footer->segment_id, index);
      index += len;
    } else {
      loc.kind = r.value.kind;
    }
    auto& ex = footer->extents;
    if (!ex.empty() && ex.back().extent.end == b &&
        ex.back().extent.loc.Continues(ex.back().extent.length(), loc)) {
      ex.back().extent.end = r.end;
    } else {
      ex.push_back(SegmentExtent{lsm::Extent{b, r.end, loc}, false, {}});
    }
  }
  footer->data_blocks = index;
}

SegmentContents WriteBuffer::Contents(SegmentFooter* footer) const {
  SegmentContents out;
  objstore::Rope* data = &out.data;
  // Live bytes per memory owner (a slab, or an adopted write), against its size.
  struct Use {
    uint64_t live = 0;
    uint64_t size = 0;
    bool mostly_dead() const { return live * 4 < size * 3; }
  };
  std::unordered_map<const void*, Use> use;
  for (const auto& [b, r] : map_.map()) {
    if (r.value.kind != lsm::LocKind::kData) continue;
    const Slab& s = slabs_[r.value.slot >> 32];
    Use& u = use[s.owner.get()];
    u.live += (r.end - b) * block_size_;
    u.size = (s.owned ? slab_blocks_ : s.owner_blocks) * block_size_;
  }
  uint64_t copied = 0;
  for (const auto& [owner, u] : use) {
    if (u.mostly_dead()) copied += u.live;
  }
  // Reserved whole: the rope points into it, so it must never reallocate.
  auto compact = std::make_shared<std::string>();
  compact->reserve(copied);
  std::vector<SummedRun> summed;
  uint64_t stream_pos = 0;
  BuildStream(footer, [&](const Slab& s, const uint8_t* p, size_t n) {
    const auto* bytes = reinterpret_cast<const char*>(p);
    if (!s.chunk_sums.empty()) {
      summed.push_back(SummedRun{stream_pos, n, &s.chunk_sums, static_cast<uint64_t>(p - s.base)});
    }
    stream_pos += n;
    if (use[s.owner.get()].mostly_dead()) {
      const size_t at = compact->size();
      compact->append(bytes, n);
      data->Append(compact, std::string_view(compact->data() + at, n));
    } else {
      data->Append(s.owner, std::string_view(bytes, n));
    }
  });
  PORTAL_ASSERT(compact->size() == copied, "compacted bytes miscounted");
  if (footer->blocks_per_chunk == chunk_blocks_) {
    out.chunk_sums =
        KnownChunkSums(data->size(), uint64_t{footer->blocks_per_chunk} * block_size_, summed);
  }
  return out;
}

}  // namespace portal::volume
