// MapMemtables: the map's in-memory layers, private to LsmVolume. The active memtable
// takes every uploaded (or replayed) segment's extents; a flush swaps it to the immutable
// one, which stays in the read path (newer than the SSTs, older than the active one)
// until its SSTs are committed. With them, where each stands in the segment and sequence
// order, and what the maintenance loop's flush triggers look at.
//
// Not thread-safe: every field is GUARDED_BY(LsmVolume::mu_).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#include "lsm/memtable.h"

namespace portal::volume {

struct MapMemtables {
  std::shared_ptr<lsm::Memtable> mem = std::make_shared<lsm::Memtable>();  // active
  std::shared_ptr<const lsm::Memtable> imm;  // flushing; null when none
  uint64_t imm_applied_segment = 0;          // what imm covers, up to and including
  uint64_t imm_applied_seq = 0;
  uint64_t mem_last_segment = 0;  // the last segment applied to mem (or committed)
  uint64_t mem_last_seq = 0;
  int64_t mem_dirty_since_ns = -1;  // when mem first took a segment since a flush; -1 none
  uint64_t segments_since_mem_flush = 0;
  uint64_t next_seq = 1;  // the next write's sequence number

  // Segment `segment_id` (its writes up to `last_seq`) was applied to mem at `now_ns`.
  void NoteApplied(uint64_t segment_id, uint64_t last_seq, int64_t now_ns) {
    mem_last_segment = segment_id;
    mem_last_seq = std::max(mem_last_seq, last_seq);
    ++segments_since_mem_flush;
    if (mem_dirty_since_ns < 0) mem_dirty_since_ns = now_ns;
  }

  // A flush begins: mem becomes imm (with what it covers), a fresh mem takes its place.
  void SwapToImmutable() {
    imm = mem;
    imm_applied_segment = mem_last_segment;
    imm_applied_seq = mem_last_seq;
    mem = std::make_shared<lsm::Memtable>();
    segments_since_mem_flush = 0;
    mem_dirty_since_ns = -1;
  }

  // A restore committed a map covering up to (`applied_segment`, `applied_seq`): both
  // memtables belong to the abandoned timeline.
  void ResetForRestore(uint64_t applied_segment, uint64_t applied_seq) {
    mem = std::make_shared<lsm::Memtable>();
    imm.reset();
    mem_last_segment = applied_segment;
    mem_last_seq = applied_seq;
    segments_since_mem_flush = 0;
    mem_dirty_since_ns = -1;
  }
};

}  // namespace portal::volume
