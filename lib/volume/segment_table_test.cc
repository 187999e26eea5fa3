#include "volume/segment_table.h"

#include <catch2/catch.hpp>

namespace portal::volume {
namespace {

constexpr int64_t kGrace = 1000;
constexpr uint64_t kAnyId = UINT64_MAX;

// A data segment as the uploader records it: footer facts, then its blocks referenced.
void Uploaded(SegmentTable& t, uint64_t id, uint64_t blocks, int64_t now) {
  t.AddSegment(id, blocks * 4096 + 100, blocks, /*fence=*/false);
  t.AddLive(id, static_cast<int64_t>(blocks), now);
}

TEST_CASE("SegmentTable: a segment is dead once unreferenced for the grace period",
          "[volume][segtab]") {
  SegmentTable t;
  Uploaded(t, 1, 8, 0);
  CHECK(t.DeadSegments(5000, kGrace, kAnyId).empty());  // referenced
  CHECK(t.Find(1)->unreferenced_since_ns == -1);
  t.AddLive(1, -8, 100);
  CHECK(t.Find(1)->unreferenced_since_ns == 100);
  CHECK(t.DeadSegments(100 + kGrace - 1, kGrace, kAnyId).empty());
  CHECK(t.DeadSegments(100 + kGrace, kGrace, kAnyId) == std::vector<uint64_t>{1});
  // Above the id GC may touch (the replay log), never.
  CHECK(t.DeadSegments(100 + 10 * kGrace, kGrace, 0).empty());
  t.Remove(1);
  CHECK(t.Find(1) == nullptr);
  CHECK(t.DeadSegments(100 + kGrace, kGrace, kAnyId).empty());
}

TEST_CASE("SegmentTable: unreferenced-since resets on a new reference", "[volume][segtab]") {
  SegmentTable t;
  Uploaded(t, 3, 4, 0);
  t.AddLive(3, -4, 10);
  CHECK(t.Find(3)->unreferenced_since_ns == 10);
  t.AddLive(3, 2, 500);  // referenced again (a restore, a relocation's source)
  CHECK(t.Find(3)->unreferenced_since_ns == -1);
  CHECK(t.DeadSegments(10 + kGrace, kGrace, kAnyId).empty());
  t.AddLive(3, -2, 800);
  // The grace counts from the last drop, not the first.
  CHECK(t.DeadSegments(10 + kGrace, kGrace, kAnyId).empty());
  CHECK(t.DeadSegments(800 + kGrace, kGrace, kAnyId) == std::vector<uint64_t>{3});
  // A second drop to 0 while unreferenced keeps the first time.
  t.AddLive(3, -1, 900);
  CHECK(t.Find(3)->unreferenced_since_ns == 800);
  CHECK(t.Find(3)->live_blocks == 0);  // never below 0
}

TEST_CASE("SegmentTable: a pinned segment is never dead, and its grace counts from the map",
          "[volume][segtab]") {
  SegmentTable t;
  Uploaded(t, 5, 4, 0);
  Uploaded(t, 6, 4, 0);
  t.SetPins({5});
  CHECK(t.pinned(5));
  CHECK(!t.pinned(6));
  t.AddLive(5, -4, 100);
  t.AddLive(6, -4, 100);
  CHECK(t.Find(5)->unreferenced_since_ns == 100);  // the clock runs while pinned
  CHECK(t.DeadSegments(100 + 100 * kGrace, kGrace, kAnyId) == std::vector<uint64_t>{6});
  CHECK(t.DeadSegments(100 + 100 * kGrace, 0, kAnyId) == std::vector<uint64_t>{6});
  t.SetPins({});  // its snapshot deleted: dead at once, its grace long past
  t.StartGrace({5}, 100 + 100 * kGrace);
  CHECK(t.Find(5)->unreferenced_since_ns == 100);
  CHECK(t.DeadSegments(100 + 100 * kGrace, kGrace, kAnyId) == std::vector<uint64_t>{5, 6});
}

TEST_CASE("SegmentTable: StartGrace starts only clocks not yet running", "[volume][segtab]") {
  SegmentTable t;
  t.AddSegment(7, 60, 0, /*fence=*/true);  // the fence written at open: no clock
  Uploaded(t, 8, 2, 0);
  t.StartGrace({7, 8, 99}, 50);
  CHECK(t.Find(7)->unreferenced_since_ns == 50);
  CHECK(t.Find(8)->unreferenced_since_ns == -1);  // referenced
  CHECK(t.Find(99) == nullptr);                   // unknown: not made
}

TEST_CASE("SegmentTable: fences are kept forever and never relocated", "[volume][segtab]") {
  SegmentTable t;
  t.AddSegment(1, 60, 0, /*fence=*/true);
  CHECK(t.Find(1)->fence);
  CHECK(t.Find(1)->unreferenced_since_ns == -1);
  CHECK(t.AddListed(2, 60, 0));  // another epoch's tiny segment: its footer says fence
  t.MarkFence(2);
  CHECK(t.AddListed(3, 60, 0));  // another, not a fence
  CHECK(t.DeadSegments(10 * kGrace, kGrace, kAnyId) == std::vector<uint64_t>{3});
  // A fence with (impossible) live data still is no relocation source.
  t.AddSegment(4, 1 << 20, 256, /*fence=*/true);
  t.AddLive(4, 1, 0);
  CHECK(t.RelocationSources(0.5, kAnyId, 8, 1 << 20).empty());
}

TEST_CASE("SegmentTable: listed and open-time entries", "[volume][segtab]") {
  SegmentTable t;
  // At open, SST indexes name segments before anything says their size.
  t.AddLive(10, 30, 0);
  CHECK(t.Find(10)->live_blocks == 30);
  CHECK(t.Find(10)->size_bytes == 0);
  CHECK(!t.AddListed(10, 4096, 5));  // known: untouched
  CHECK(t.Find(10)->unreferenced_since_ns == -1);
  CHECK(t.Find(10)->size_bytes == 0);
  CHECK(t.AddListed(11, 4096, 5));  // unknown: unreferenced since the listing
  CHECK(t.Find(11)->unreferenced_since_ns == 5);
  CHECK(!t.Find(11)->fence);
  // A replayed footer for an id the map named keeps its count and clock.
  t.AddSegment(10, 1 << 20, 200, false);
  CHECK(t.Find(10)->live_blocks == 30);
  CHECK(t.Find(10)->data_blocks == 200);
  // A segment of TRIMs only: no data, so unreferenced from its upload.
  t.AddSegment(12, 80, 0, false);
  t.AddLive(12, 0, 77);
  CHECK(t.Find(12)->unreferenced_since_ns == 77);
}

TEST_CASE("SegmentTable: compaction deltas and a restore's counts", "[volume][segtab]") {
  SegmentTable t;
  Uploaded(t, 1, 10, 0);
  Uploaded(t, 2, 10, 0);
  t.ApplyLiveDeltas({{1, -10}, {2, -3}, {42, -5}}, 200);
  CHECK(t.Find(1)->live_blocks == 0);
  CHECK(t.Find(1)->unreferenced_since_ns == 200);
  CHECK(t.Find(2)->live_blocks == 7);
  CHECK(t.Find(2)->unreferenced_since_ns == -1);
  CHECK(t.Find(42) == nullptr);  // unknown: skipped
  // Restore: counts become the snapshot map's exactly.
  t.SetLive({{1, 4}, {9, 2}}, 300);
  CHECK(t.Find(1)->live_blocks == 4);
  CHECK(t.Find(1)->unreferenced_since_ns == -1);
  CHECK(t.Find(2)->live_blocks == 0);
  CHECK(t.Find(2)->unreferenced_since_ns == 300);
  CHECK(t.Find(9)->live_blocks == 2);  // named by the snapshot's SSTs only
  CHECK(t.Find(9)->unreferenced_since_ns == -1);
  t.SetLive({}, 400);
  CHECK(t.Find(2)->unreferenced_since_ns == 300);  // a running clock is kept
  CHECK(t.Find(9)->unreferenced_since_ns == 400);
}

TEST_CASE("SegmentTable: relocation sources, sparsest first, within budget", "[volume][segtab]") {
  SegmentTable t;
  for (uint64_t id = 1; id <= 6; ++id) Uploaded(t, id, 100, 0);
  t.AddLive(1, -90, 1);  // 0.10
  t.AddLive(2, -80, 1);  // 0.20
  t.AddLive(3, -95, 1);  // 0.05
  t.AddLive(4, -40, 1);  // 0.60: not sparse
  t.AddLive(5, -99, 1);  // 0.01, pinned
  t.AddLive(6, -70, 1);  // 0.30
  t.SetPins({5});
  CHECK(t.RelocationSources(0.5, kAnyId, 8, 1000) == std::vector<uint64_t>{3, 1, 2, 6});
  CHECK(t.RelocationSources(0.5, kAnyId, 2, 1000) == std::vector<uint64_t>{3, 1});
  // The budget stops after the source that reaches it: 5 + 10 >= 12.
  CHECK(t.RelocationSources(0.5, kAnyId, 8, 12) == std::vector<uint64_t>{3, 1});
  CHECK(t.RelocationSources(0.5, 2, 8, 1000) == std::vector<uint64_t>{1, 2});  // max id
  t.MarkNothingToCopy(3);
  t.MarkNothingToCopy(77);  // unknown: nothing made
  CHECK(t.Find(77) == nullptr);
  CHECK(t.RelocationSources(0.5, kAnyId, 8, 1000) == std::vector<uint64_t>{1, 2, 6});
  t.AddLive(1, -10, 2);  // nothing live: GC deletes it instead
  t.AddLive(20, 5, 2);   // data size unknown (named at open): not a source
  CHECK(t.RelocationSources(0.5, kAnyId, 8, 1000) == std::vector<uint64_t>{2, 6});
  CHECK(t.RelocationSources(0, kAnyId, 8, 1000).empty());
}

TEST_CASE("SegmentTable: totals for stats", "[volume][segtab]") {
  SegmentTable t;
  CHECK(t.totals().segments == 0);
  t.AddSegment(1, 60, 0, /*fence=*/true);
  Uploaded(t, 2, 10, 0);  // 41060 bytes
  t.AddLive(2, -4, 1);
  t.AddLive(3, 7, 1);  // named by the map, size not known
  SegmentTable::Totals s = t.totals();
  CHECK(s.segments == 3);
  CHECK(s.size_bytes == 60 + 41060);
  CHECK(s.live_blocks == 6 + 7);
  t.Remove(2);
  CHECK(t.totals().segments == 2);
  CHECK(t.totals().live_blocks == 7);
}

}  // namespace
}  // namespace portal::volume
