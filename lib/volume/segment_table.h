// SegmentTable: what the volume knows of each segment in the store, for GC and stats:
// its stored size, its data blocks, how many of them the committed map references
// (memtable and SSTs, shadowed entries included: docs/volume.md "Segment liveness"),
// whether it is a fence, whether a snapshot pins it, and since when nothing references
// it. It lives in memory only: open rebuilds it from the SST indexes (docs/volume.md
// "Manifest").
//
// The rules it keeps:
// - A live count never goes below 0.
// - Unreferenced-since: recorded (once) when a segment's live count is or drops to 0;
//   cleared when it becomes positive again. Pins do not stop that clock: a pinned
//   segment is simply never dead, and once its last pin goes the grace counts from when
//   the map stopped referencing it.
// - Dead (GC deletes it): not a fence, live count 0, unreferenced for at least the grace
//   period, not pinned, and at or below the id GC may touch (above applied_segment
//   segments are the replay log).
// - A fence is never dead and never a relocation source: deleting one would let a
//   stalled older writer succeed (DESIGN.md single writer).
//
// Not thread-safe: the volume guards it with its mutex. Times come from the caller (Env).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

namespace portal::volume {

class SegmentTable {
 public:
  struct Segment {
    uint64_t size_bytes = 0;   // stored object size (0 when only map references are known)
    uint64_t data_blocks = 0;  // blocks in its data stream (0: not known, or none)
    uint64_t live_blocks = 0;  // data blocks the committed map references
    bool fence = false;
    // GC found only shadowed references to copy: not a relocation source again (its
    // count reaches 0 once compaction drops those references).
    bool nothing_to_copy = false;
    int64_t unreferenced_since_ns = -1;  // -1: referenced (or a fence at open)
  };
  struct Totals {
    uint64_t segments = 0;
    uint64_t size_bytes = 0;
    uint64_t live_blocks = 0;
  };

  // A segment uploaded, replayed or written as our fence: its footer's facts. An entry
  // that exists already (map references read at open) keeps its live count and clock.
  void AddSegment(uint64_t id, uint64_t size_bytes, uint64_t data_blocks, bool fence);
  // A segment found by listing the store that the table does not know: nothing the
  // volume loaded references it, so it is unreferenced since `now_ns`. False (and
  // nothing changes) when the table knows it.
  bool AddListed(uint64_t id, uint64_t size_bytes, int64_t now_ns);
  // Keeps `id` forever, as a fence (a listed footer that says fence or cannot be read).
  void MarkFence(uint64_t id);

  // Adds `delta_blocks` map references to `id` (an entry is made if need be); see the
  // unreferenced-since rule above.
  void AddLive(uint64_t id, int64_t delta_blocks, int64_t now_ns);
  // A compaction's net change per segment; segments the table does not know are skipped.
  void ApplyLiveDeltas(const std::map<uint64_t, int64_t>& deltas, int64_t now_ns);
  // A restore: the live counts become exactly `live` (absent: 0), clocks per the rule.
  void SetLive(const std::map<uint64_t, uint64_t>& live, int64_t now_ns);
  // A deleted snapshot's segments: those known with a live count of 0 and no clock yet
  // start their grace at `now_ns`.
  void StartGrace(const std::vector<uint64_t>& ids, int64_t now_ns);

  // Every segment some snapshot references (replaces the previous set).
  void SetPins(std::set<uint64_t> pinned) { pinned_ = std::move(pinned); }
  bool pinned(uint64_t id) const { return pinned_.count(id) > 0; }
  void MarkNothingToCopy(uint64_t id);  // no-op for an unknown id
  void Remove(uint64_t id);             // deleted from the store

  const Segment* Find(uint64_t id) const;
  // Dead segments (see above), ascending. `max_id`: the highest id GC may delete;
  // `grace_ns`: how long a segment must have been unreferenced (`now_ns` - since).
  std::vector<uint64_t> DeadSegments(int64_t now_ns, int64_t grace_ns, uint64_t max_id) const;
  // Relocation sources: segments at or below `max_id`, not fences, not pinned, with a
  // known data size, some live data, and live/data below `live_ratio`; sparsest first
  // (ties by id), at most `max_sources`, stopping once their live blocks reach
  // `max_blocks`.
  std::vector<uint64_t> RelocationSources(double live_ratio, uint64_t max_id, size_t max_sources,
                                          uint64_t max_blocks) const;
  Totals totals() const;

 private:
  static void Adjust(Segment& s, int64_t delta_blocks, int64_t now_ns);

  std::map<uint64_t, Segment> segs_;
  std::set<uint64_t> pinned_;
};

}  // namespace portal::volume
