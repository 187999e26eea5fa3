// The read path: resolve a block range through every layer of the volume, newest first
// (active buffer, sealed buffers, memtable, immutable memtable, L0 SSTs newest first,
// then L1, L2, ...), then fetch segment data for what the map points at.
#include <algorithm>
#include <cstring>

#include "util/buffer_pool.h"
#include "util/log.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr uint64_t kStatusWindowBlocks = 64 * 1024;
constexpr uint64_t kCacheMaxBytes = 64ull << 20;

// Runs `foreach_piece(a, b, emit)` over every still-uncovered interval and replaces the
// intervals by the gaps the pieces left. `emit(first, end)` reports a covered piece.
template <typename ForEach>
void Cover(std::vector<std::pair<uint64_t, uint64_t>>* uncovered, ForEach&& foreach_piece) {
  std::vector<std::pair<uint64_t, uint64_t>> next;
  for (auto [a, b] : *uncovered) {
    uint64_t cur = a;
    foreach_piece(a, b, [&](uint64_t first, uint64_t end) {
      if (first > cur) next.emplace_back(cur, first);
      cur = end;
    });
    if (cur < b) next.emplace_back(cur, b);
  }
  uncovered->swap(next);
}

}  // namespace

Task<Status> LsmVolume::Resolve(uint64_t first, uint64_t end,
                                std::function<void(const Piece&)> sink, bool include_buffers,
                                const Levels* frozen) {
  Intervals uncovered{{first, end}};
  std::shared_ptr<const Version> version;
  if (!frozen) {
    std::lock_guard lock(mu_);
    auto cover_buffer = [&](const WriteBuffer& buf) {
      if (buf.empty()) return;
      Cover(&uncovered, [&](uint64_t a, uint64_t b, auto emit) {
        buf.ForEach(a, b, [&](const WriteBuffer::Piece& p) {
          lsm::Loc loc;
          loc.kind = p.kind;
          sink(Piece{p.first, p.end, loc, p.data});
          emit(p.first, p.end);
          return true;
        });
      });
    };
    auto cover_memtable = [&](const lsm::Memtable& mem) {
      if (mem.empty()) return;
      Cover(&uncovered, [&](uint64_t a, uint64_t b, auto emit) {
        mem.ForEach(a, b, [&](const lsm::Extent& e) {
          sink(Piece{e.first, e.end, e.loc, nullptr});
          emit(e.first, e.end);
          return true;
        });
      });
    };
    if (include_buffers) {
      uploader_.ForEachBufferLocked([&](const WriteBuffer& buf) {  // newest first
        cover_buffer(buf);
        return !uncovered.empty();
      });
    }
    if (!uncovered.empty()) cover_memtable(*map_.mem);
    if (!uncovered.empty() && map_.imm) cover_memtable(*map_.imm);
    version = versions_.current();
  }
  // The committed map, outside the lock (the Version is immutable and pinned), or the
  // snapshot's frozen levels.
  const Levels& levels = frozen ? *frozen : version->levels;
  for (const auto& level : levels) {
    for (const SstRef& ref : level) {
      if (uncovered.empty()) break;
      Intervals next;
      for (auto [a, b] : uncovered) {
        if (b <= ref.min_block || a >= ref.end_block) {
          next.emplace_back(a, b);
          continue;
        }
        uint64_t cur = a;
        CO_RETURN_IF_ERROR(co_await ssts_.ForEach(ref, a, b, [&](const lsm::Extent& e) {
          if (e.first > cur) next.emplace_back(cur, e.first);
          sink(Piece{e.first, e.end, e.loc, nullptr});
          cur = e.end;
          return true;
        }));
        if (cur < b) next.emplace_back(cur, b);
      }
      uncovered.swap(next);
    }
  }
  for (auto [a, b] : uncovered) {
    if (base_ && include_buffers) {  // a clone: what it never wrote is its base's
      CO_RETURN_IF_ERROR(co_await base_->Resolve(
          a, b, [&](uint64_t f, uint64_t e, const lsm::Loc& loc, CloneBase* layer) {
            sink(Piece{f, e, loc, nullptr, layer});
          }));
    } else {
      sink(Piece{a, b, lsm::Loc::Hole(), nullptr});
    }
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::ReadBlocksRaw(uint64_t first, uint64_t end, uint64_t offset,
                                      std::span<uint8_t> out, std::vector<ByteRange>* zeroes,
                                      const Levels* frozen) {
  const uint64_t bs = block_size_;
  const uint64_t out_end = offset + out.size();
  // Copies blocks [b, e) from src (null: zeroes) into the part of `out` they overlap.
  auto copy = [&](uint64_t b, uint64_t e, const uint8_t* src) {
    uint64_t from = std::max(offset, b * bs), to = std::min(out_end, e * bs);
    if (from >= to) return;
    if (src) {
      std::memcpy(out.data() + (from - offset), src + (from - b * bs), to - from);
    } else {
      std::memset(out.data() + (from - offset), 0, to - from);
      if (zeroes) zeroes->push_back({from - offset, to - from});
    }
  };
  for (int attempt = 0;; ++attempt) {
    if (zeroes) zeroes->clear();
    std::vector<Piece> fetch;
    Status st = co_await Resolve(
        first, end,
        [&](const Piece& p) {
          if (p.bytes) {
            copy(p.first, p.end, p.bytes);  // buffer data: copied now, under mu_
          } else if (p.loc.is_data()) {
            fetch.push_back(p);
          } else {
            copy(p.first, p.end, nullptr);
          }
        },
        /*include_buffers=*/true, frozen);
    if (st.IsNotFound() && attempt < kReadRetries) continue;  // an SST retired under us
    CO_RETURN_IF_ERROR(st);
    // The pieces of one segment lying close together in its data stream (within a chunk
    // of each other, as a sequential write laid them out between later overwrites) are
    // one read of the span that covers them: one GET of adjacent chunks, not one per
    // piece. Every segment's span is read at once: a read over data overwritten here
    // and there waits about one GET, not one per piece.
    // A clone's pieces may come from its base's layers (Piece::base), whose segment ids
    // are another store's: spans never mix layers.
    std::sort(fetch.begin(), fetch.end(), [](const Piece& a, const Piece& b) {
      if (a.base != b.base) return std::less<const CloneBase*>()(a.base, b.base);
      return a.loc.segment != b.loc.segment ? a.loc.segment < b.loc.segment
                                            : a.loc.index < b.loc.index;
    });
    struct Span {
      uint64_t segment, index, n;
      size_t first_piece, end_piece;  // in `fetch`
      CloneBase* base;                // null: this volume's own segment
    };
    std::vector<Span> spans;
    for (size_t i = 0; i < fetch.size(); ++i) {
      const lsm::Loc& loc = fetch[i].loc;
      const uint64_t n = fetch[i].end - fetch[i].first;
      if (!spans.empty() && spans.back().base == fetch[i].base &&
          spans.back().segment == loc.segment &&
          loc.index <= spans.back().index + spans.back().n + options_.blocks_per_chunk) {
        Span& sp = spans.back();
        sp.n = std::max(sp.index + sp.n, loc.index + n) - sp.index;
        sp.end_piece = i + 1;
      } else {
        spans.push_back({loc.segment, loc.index, n, i, i + 1, fetch[i].base});
      }
    }
    // Spans of several pieces are read into scratch first. Large scratch comes from the
    // buffer pool (pages mapped already: a fresh 1 MiB costs 256 page faults and the
    // kernel's zeroing, which perf put at a fifth of a warm sequential read's CPU time).
    std::vector<std::string> scratch(spans.size());
    std::vector<Task<Status>> reads;
    for (size_t k = 0; k < spans.size(); ++k) {
      const Span& sp = spans[k];
      const Piece& p = fetch[sp.first_piece];
      uint8_t* dest;
      if (sp.end_piece == sp.first_piece + 1 && p.first * bs >= offset && p.end * bs <= out_end) {
        dest = out.data() + (p.first * bs - offset);  // one piece, wholly inside `out`
      } else {
        if (options_.buffer_pool) scratch[k] = options_.buffer_pool->Take(sp.n * bs);
        scratch[k].resize(sp.n * bs);
        dest = reinterpret_cast<uint8_t*>(scratch[k].data());
      }
      if (sp.base) {
        reads.push_back(sp.base->ReadBlocks(sp.segment, sp.index, sp.n, dest));
      } else {
        reads.push_back(segments_.ReadBlocks(sp.segment, sp.index, sp.n, dest, &read_ahead_));
      }
    }
    for (const Status& r : co_await WhenAll(std::move(reads))) {
      if (st.ok() || (st.IsNotFound() && !r.ok() && !r.IsNotFound())) st = r;
    }
    if (st.IsNotFound() && attempt < kReadRetries) continue;  // GC raced us: resolve again
    if (st.ok()) {
      for (size_t k = 0; k < spans.size(); ++k) {
        if (scratch[k].empty()) continue;
        for (size_t i = spans[k].first_piece; i < spans[k].end_piece; ++i) {
          const Piece& p = fetch[i];
          copy(p.first, p.end,
               reinterpret_cast<const uint8_t*>(scratch[k].data()) +
                   (p.loc.index - spans[k].index) * bs);
        }
      }
    }
    if (options_.buffer_pool) {
      for (std::string& s : scratch) options_.buffer_pool->Give(std::move(s));
    }
    CO_RETURN_IF_ERROR(st);
    break;
  }
  if (zeroes && zeroes->size() > 1) {
    std::sort(zeroes->begin(), zeroes->end(),
              [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
    std::vector<ByteRange> merged;
    for (const auto& z : *zeroes) {
      if (!merged.empty() && merged.back().offset + merged.back().length == z.offset) {
        merged.back().length += z.length;
      } else {
        merged.push_back(z);
      }
    }
    zeroes->swap(merged);
  }
  co_return Status::Ok();
}

Task<Status> LsmVolume::Read(uint64_t offset, std::span<uint8_t> out,
                             std::vector<ByteRange>* zeroes) {
  if (out.empty()) co_return Status::Ok();
  const uint64_t bs = block_size_;
  const uint64_t first = offset / bs, end = (offset + out.size() + bs - 1) / bs;
  MaybeReadAhead(first, end);  // before our own GETs: its GETs go out alongside them
  co_return co_await ReadBlocksRaw(first, end, offset, out, zeroes);
}

void LsmVolume::MaybeReadAhead(uint64_t first, uint64_t end) {
  auto range = read_ahead_.OnRead(first, end, size_bytes() / block_size_);
  if (!range) return;
  {
    std::lock_guard lock(mu_);
    if (lifecycle_.closing || lifecycle_.stop) return;
    loops_.Add(1);  // Close waits for it
  }
  Start(ReadAheadBlocks(range->first, range->second),
        [v = shared_from_this()] { v->loops_.Done(); });
}

Task<void> LsmVolume::ReadAheadBlocks(uint64_t first, uint64_t end) {
  struct Run {
    uint64_t segment, index, n;
  };
  std::vector<Run> runs;
  Status st = co_await Resolve(first, end, [&](const Piece& p) {
    if (!p.bytes && !p.base && p.loc.is_data()) {  // a clone's base is not read ahead
      runs.push_back({p.loc.segment, p.loc.index, p.end - p.first});
    }
  });
  if (!st.ok()) {  // an SST retired meanwhile, or the store failing: a read-ahead is a hint
    read_ahead_.counters().failed.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  // One prefetch per segment run: pieces adjacent (or nearly: within a chunk) in one
  // segment's data stream are fetched together, as sequential writes laid them out.
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.index < b.index;
  });
  std::vector<Run> merged;
  for (const Run& r : runs) {
    if (!merged.empty() && merged.back().segment == r.segment &&
        r.index <= merged.back().index + merged.back().n + options_.blocks_per_chunk) {
      Run& m = merged.back();
      m.n = std::max(m.index + m.n, r.index + r.n) - m.index;
    } else {
      merged.push_back(r);
    }
  }
  std::vector<Task<bool>> prefetches;
  for (const Run& r : merged) {
    prefetches.push_back(segments_.Prefetch(store_, read_ahead_, r.segment, r.index, r.n));
  }
  co_await WhenAll(std::move(prefetches));
}

Task<void> LsmVolume::WarmMap() {
  constexpr uint64_t kMaxGetBytes = 1 << 20;  // a read waiting for a block waits ~one GET
  constexpr size_t kInFlight = 8;             // SSTs warmed at once
  std::vector<lsm::SstRef> refs;
  {
    std::lock_guard lock(mu_);
    const uint64_t budget = cache_.stats().capacity_bytes / 4;
    uint64_t charge = 0;
    for (const auto& level : versions_.current()->levels) {  // L0 first: every read's first stop
      for (const lsm::SstRef& ref : level) {
        charge += ref.extent_count * sizeof(lsm::Extent) + (ref.size_bytes >> 4);
        if (charge > budget) break;
        refs.push_back(ref);
      }
      if (charge > budget) break;
    }
  }
  for (size_t i = 0; i < refs.size(); i += kInFlight) {
    {
      std::lock_guard lock(mu_);
      if (lifecycle_.closing || lifecycle_.stop || lifecycle_.fenced) co_return;
    }
    std::vector<Task<bool>> warms;
    for (size_t j = i; j < std::min(refs.size(), i + kInFlight); ++j) {
      warms.push_back(ssts_.Warm(refs[j], store_, kMaxGetBytes));
    }
    co_await WhenAll(std::move(warms));  // a hint: an SST retired meanwhile, a failing store
  }
}

Task<Result<std::vector<StatusExtent>>> LsmVolume::BlockStatus(uint64_t offset, uint64_t length,
                                                                uint32_t max_extents) {
  co_return co_await StatusOf(offset, length, max_extents, nullptr);
}

Task<Result<std::vector<StatusExtent>>> LsmVolume::StatusOf(uint64_t offset, uint64_t length,
                                                             uint32_t max_extents,
                                                             const Levels* frozen) {
  if (length == 0 || max_extents == 0) {
    co_return Status::InvalidArgument("empty block status request");
  }
  const uint64_t bs = block_size_;
  const uint64_t end_byte = offset + length;
  const uint64_t last = (end_byte + bs - 1) / bs;
  std::vector<StatusExtent> out;
  auto add = [&](uint64_t from, uint64_t to, bool hole, bool zero) {
    from = std::max(from, offset);
    to = std::min(to, end_byte);
    if (from >= to) return;
    if (!out.empty() && out.back().hole == hole && out.back().zero == zero) {
      out.back().length += to - from;
    } else {
      out.push_back({to - from, hole, zero});
    }
  };
  for (uint64_t w = offset / bs; w < last && out.size() <= max_extents;) {
    const uint64_t w_end = std::min(last, w + kStatusWindowBlocks);
    std::vector<Piece> pieces;
    Status st;
    for (int attempt = 0;; ++attempt) {
      pieces.clear();
      st = co_await Resolve(
          w, w_end, [&](const Piece& p) { pieces.push_back(Piece{p.first, p.end, p.loc, nullptr}); },
          /*include_buffers=*/true, frozen);
      // An SST retired and collected under a slow lookup: resolve again, as reads do.
      if (!st.IsNotFound() || attempt >= kReadRetries) break;
    }
    CO_RETURN_IF_ERROR(st);
    std::sort(pieces.begin(), pieces.end(),
              [](const Piece& a, const Piece& b) { return a.first < b.first; });
    for (const Piece& p : pieces) {
      const bool data = p.loc.is_data();
      add(p.first * bs, p.end * bs, p.loc.kind == lsm::LocKind::kHole, !data);
    }
    w = w_end;
  }
  if (out.size() > max_extents) out.resize(max_extents);
  co_return out;
}

Task<Status> LsmVolume::Cache(uint64_t offset, uint64_t length) {
  if (options_.read_partial_raw_chunks || length == 0) co_return Status::Ok();
  length = std::min(length, kCacheMaxBytes);
  const uint64_t bs = block_size_;
  std::vector<Piece> fetch;
  Status resolved = co_await Resolve(offset / bs, (offset + length + bs - 1) / bs,
                                     [&](const Piece& p) {
                                       if (!p.bytes && !p.base && p.loc.is_data()) {
                                         fetch.push_back(p);
                                       }
                                     });
  if (resolved.IsNotFound()) co_return Status::Ok();  // an SST retired meanwhile: a hint
  CO_RETURN_IF_ERROR(resolved);
  std::vector<uint8_t> scratch;
  for (const Piece& p : fetch) {  // warms the chunk cache
    scratch.resize((p.end - p.first) * bs);
    Status st =
        co_await segments_.ReadBlocks(p.loc.segment, p.loc.index, p.end - p.first, scratch.data());
    if (st.IsNotFound()) continue;  // collected meanwhile: nothing worth warming (a hint)
    CO_RETURN_IF_ERROR(st);
  }
  co_return Status::Ok();
}

}  // namespace portal::volume
