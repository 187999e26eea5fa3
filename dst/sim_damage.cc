// Damage between incarnations (dst/README.md "Damage"; DESIGN.md single writer, step 7).
//
// When no writer is alive (every one crashed or closed) and before the next opens, with
// probability `damage_permille` one object is deleted, truncated or bit-flipped: a data
// segment in the replay log below a present segment whose footer records it as stored
// (so the damage is detectable: damage above all evidence looks like a crash, by design),
// a segment at or below applied_segment (read through the map), a map SST, the latest
// manifest, or a snapshot object. The next open then has two legal outcomes:
//   - it refuses with a non-retryable error: the object is restored, the next open goes on;
//   - it opens: every block must read a content legal after a crash, or fail (an error
//     is allowed on any block while the store is damaged; old data never is). Nothing is
//     pinned in the oracle; the incarnation is killed, the object restored, and the next
//     open is judged as after a crash, as if the damaged one had never been verified.
// A deleted replay-log segment that the open took for a crash gap (it fenced it) is a
// violation in itself.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "dst/sim.h"

namespace portal::dst {
namespace {

constexpr uint64_t kRunBlocks = 64;
constexpr uint64_t kSampledHoles = 8;

// Deleting the latest manifest is drawn only when it opened its epoch: the open then
// refuses (the newest segment carries a newer epoch than the manifest it finds). A lost
// later commit of the same epoch is not detected by design (docs/volume.md "Damage": a
// lost restore is undone), so it is not drawn.


}  // namespace

void Simulator::MaybeDamage() {
  if (damage_.active || k_.faults.damage_permille == 0 || phase_ != "workload" ||
      !plan_.enabled()) {
    return;
  }
  // Nothing alive may still write: dead writers' stores are crashed (ProcessEvents).
  for (auto& w : writers_) {
    if (w->vol && !w->dead && !w->closed) return;
  }
  if (damage_rng_.Below(1000) >= k_.faults.damage_permille) return;

  auto [number, m] = LatestManifest(mem_, k_.volume.keyring);
  if (number == 0) return;
  std::vector<uint64_t> segs;
  for (const auto& key : ListKeys(mem_, "seg/")) {
    uint64_t id;
    if (volume::ParseSegmentKey(key, &id)) segs.push_back(id);
  }
  std::sort(segs.begin(), segs.end());
  // The open's evidence: the highest footer's durable_through (never damaged itself).
  uint64_t evidence = 0;
  if (!segs.empty()) {
    if (auto f = SegmentFooterOf(mem_, segs.back(), k_.volume.keyring)) evidence = f->durable_through;
  }
  enum Class { kReplayLog, kMapped, kSst, kManifest, kSnapshot, kClasses };
  std::vector<std::string> pool[kClasses];
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    const uint64_t id = segs[i];
    if (id > m.applied_segment && id <= evidence) {
      pool[kReplayLog].push_back(volume::SegmentKey(id));
    } else if (id <= m.applied_segment) {
      pool[kMapped].push_back(volume::SegmentKey(id));
    }
    // Above applied_segment and above the evidence: damage there looks like a crash.
  }
  for (const auto& level : m.levels) {
    for (const auto& ref : level) pool[kSst].push_back(ref.key);
  }
  if (pool[kSst].empty() || damage_rng_.Below(4) == 0) {
    for (const auto& key : ListKeys(mem_, "map/")) pool[kSst].push_back(key);
  }
  pool[kManifest].push_back(volume::ManifestKey(number));
  for (const auto& s : m.snapshots) pool[kSnapshot].push_back(s.key);

  const uint64_t roll = damage_rng_.Below(100);
  int cls = roll < 40 ? kReplayLog : roll < 60 ? kMapped : roll < 75 ? kSst
            : roll < 87 ? kManifest : kSnapshot;
  while (pool[cls].empty()) cls = (cls + 1) % kClasses;  // kManifest is never empty
  const std::string key = pool[cls][damage_rng_.Below(pool[cls].size())];
  auto bytes = ReadObject(mem_, key);
  if (!bytes) return;

  DamageState d;
  d.key = key;
  d.pristine = *bytes;
  // Deleted segments are what the planted bug (replay skips the damage check) needs.
  uint64_t kind = cls == kReplayLog ? damage_rng_.Below(4) : damage_rng_.Below(3);
  if (kind == 3) kind = 0;
  if (cls == kManifest && kind == 0 && m.epoch_manifest != number) {
    kind = 1 + damage_rng_.Below(2);
  }
  // read_partial_raw_chunks (memory:// only, private to one process, never damaged
  // between two) reads raw blocks without the chunk checksum: a flip there is unseen by
  // design. Truncate instead (a short read is still detected).
  if (kind == 2 && (cls == kReplayLog || cls == kMapped) && k_.volume.read_partial_raw_chunks) {
    kind = 1;
  }
  if (bytes->empty()) kind = 0;
  const char* where[] = {"in the replay log", "at or below applied_segment", "a map SST",
                         "the latest manifest", "a snapshot object"};
  if (kind == 0) {
    DeleteObject(mem_, key);
    d.damaged = std::nullopt;
    d.what = fmt::format("deleted {} ({})", key, where[cls]);
  } else if (kind == 1) {
    const uint64_t len = damage_rng_.Below(bytes->size());
    d.damaged = bytes->substr(0, len);
    d.what = fmt::format("truncated {} ({}) from {} to {} bytes", key, where[cls],
                         bytes->size(), len);
  } else {
    const uint64_t at = damage_rng_.Below(bytes->size());
    const int bit = static_cast<int>(damage_rng_.Below(8));
    std::string flipped = *bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ (1 << bit));
    d.damaged = std::move(flipped);
    d.what = fmt::format("flipped bit {} of byte {} of {} bytes of {} ({})", bit, at,
                         bytes->size(), key, where[cls]);
  }
  if (d.damaged) WriteObject(mem_, key, *d.damaged);
  d.replay_gap = cls == kReplayLog && kind == 0;
  d.active = true;
  damage_ = std::move(d);
  ++damages_;
  history_.Mix(0xda3a9e00 + kind);
  for (char c : key) history_.Mix(uint64_t(uint8_t(c)));
  Note(fmt::format("damage: {} (highest segment {} records through {}; applied {})",
                   damage_.what, segs.empty() ? 0 : segs.back(), evidence, m.applied_segment));
}

void Simulator::RepairDamage() {
  if (!damage_.active) return;
  damage_.active = false;
  auto now = ReadObject(mem_, damage_.key);
  if (now != damage_.damaged) {
    if (damage_.replay_gap && damage_.late_put_back && now == damage_.pristine) {
      // Not an open writing there: its own writer's late PUT (dst/late_store.h), on its
      // way since before the damage, landed in the hole with the very bytes it held (a
      // segment's bytes never change across retries). An open's fence would carry its
      // own epoch. (seed 974023505663 on cdc11a2 reported this as "written again".)
      Note(fmt::format("damage: {} put back by its writer's late PUT (its own bytes)",
                       damage_.key));
      return;
    }
    if (damage_.replay_gap) {
      return Fail(fmt::format(
          "damage taken for a crash: {} was {}, below a segment that records it as stored, "
          "and an open wrote there instead of refusing (DESIGN.md single writer, step 7)",
          damage_.key, now ? "written again" : "deleted"));
    }
    // The store moved on (GC collected the object, an open reused a deleted name):
    // putting the old bytes back would undo that.
    Note(fmt::format("damage: {} changed since it was damaged; not restored", damage_.key));
    return;
  }
  WriteObject(mem_, damage_.key, damage_.pristine);
  Note(fmt::format("damage repaired: {} restored", damage_.key));
}

std::vector<std::pair<uint64_t, std::vector<uint8_t>>> Simulator::ReadDamaged(
    Writer* w, const std::vector<uint64_t>& blocks, device::BlockDevice* dev) {
  const uint64_t bs = k_.volume.block_size;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> out;
  auto keep = [&](uint64_t first, const std::vector<uint8_t>& data) {
    for (uint64_t i = 0; i < data.size() / bs; ++i) {
      out.emplace_back(first + i, std::vector<uint8_t>(data.begin() + i * bs,
                                                       data.begin() + (i + 1) * bs));
    }
  };
  auto error = [&](uint64_t b, const Status& st) {
    if (damage_errors_++ < 3 || b == trace_block_) {
      Note(fmt::format("damage: block {} on writer {} fails: {}", b, w->id, st.ToString()));
    }
  };
  for (size_t i = 0; i < blocks.size() && !failed() && !w->dead;) {
    size_t j = i + 1;
    while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1 && j - i < kRunBlocks) ++j;
    std::vector<uint8_t> data;
    Status st;
    if (ReadBlocks(w, blocks[i], j - i, &data, dev, &st)) {
      keep(blocks[i], data);
    } else if (j - i == 1) {
      error(blocks[i], st);
    } else {
      for (size_t k = i; k < j && !failed() && !w->dead; ++k) {  // which blocks fail
        if (ReadBlocks(w, blocks[k], 1, &data, dev, &st)) {
          keep(blocks[k], data);
        } else {
          error(blocks[k], st);
        }
      }
    }
    i = j;
  }
  return out;
}

void Simulator::VerifyDamaged(Writer* w) {
  ++damage_opened_;
  plan_.set_triggers_suspended(w->id, true);
  std::vector<uint64_t> blocks = w->tl->Blocks();
  Writer* restorer = nullptr;
  std::unique_ptr<Timeline> alt = TakeRestoreAlt(w, &restorer);  // a copy: nothing settled
  if (alt) {
    for (uint64_t b : alt->Blocks()) blocks.push_back(b);
  }
  const uint64_t nblocks = k_.volume.size_bytes / k_.volume.block_size;
  for (uint64_t i = 0; i < kSampledHoles; ++i) blocks.push_back(damage_rng_.Below(nblocks));
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  const uint64_t errors_before = damage_errors_;
  const auto got = ReadDamaged(w, blocks, w->vol.get());
  // Crash mode, on copies: a block that reads must be legal after a crash; one that
  // fails stays unresolved for the next (repaired) open.
  auto judge = [&](const Timeline& tl) -> std::string {
    Timeline scratch = tl;
    for (const auto& [b, data] : got) {
      if (b == trace_block_) {
        std::fprintf(stderr, "trace: writer %d opened a damaged store, block reads ok\n", w->id);
      }
      std::string err = scratch.Resolve(b, data, nullptr, nullptr);
      if (!err.empty()) return err;
    }
    return "";
  };
  if (!failed() && !w->dead) {
    std::string err = judge(*w->tl);
    if (!err.empty() && alt) {
      std::string restored = judge(*alt);
      if (restored.empty()) err.clear();
    }
    if (!err.empty()) {
      Fail(fmt::format("writer {} opened a damaged store ({}) and read stale data: {}", w->id,
                       damage_.what, err));
    }
  }
  if (!failed() && !w->dead) CheckSnapshotList(w, /*settle=*/false);
  if (!failed() && !w->dead) VerifySnapshots(w, /*damaged=*/true);
  plan_.set_triggers_suspended(w->id, false);
  if (failed()) return;
  Note(fmt::format("damage: writer {} opened the damaged store; {} blocks read, {} failed",
                   w->id, got.size(), damage_errors_ - errors_before));
  if (!w->crash_handled) CrashWriter(w, "killed after verifying a damaged store");
  RepairDamage();
}

}  // namespace portal::dst
