// Damaged stores (DESIGN.md single writer, step 7; docs/volume.md "Damage"): an object
// deleted, truncated or bit-flipped between two runs. What the user sees must be a
// refusal to open naming the object, a read error naming it, or no effect where the
// object is superseded: never old or zero data without an error.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include <fmt/format.h>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr uint64_t kDevice = 1 << 20;
constexpr size_t kBlock = 4096;

VolumeOptions DamageOptions() {
  VolumeOptions o = testing::SmallVolumeOptions(kDevice);
  o.memtable_flush_segments = 1000;  // only explicit memtable flushes
  o.memtable_flush_interval_ms = 1'000'000'000;
  o.l0_compaction_trigger = 1000;
  o.gc_interval_ms = 1'000'000'000;
  o.gc_grace_ms = 1000;
  return o;
}

uint8_t Fill(uint64_t tag, uint64_t block) { return static_cast<uint8_t>(tag * 37 + block + 1); }

// Blocks [first, first + n) written with `tag`, one block value per block.
std::vector<uint8_t> Blocks(uint64_t tag, uint64_t first, uint64_t n) {
  std::vector<uint8_t> d(n * kBlock);
  for (uint64_t i = 0; i < n; ++i) {
    std::fill_n(d.begin() + i * kBlock, kBlock, Fill(tag, first + i));
  }
  return d;
}

// What every block must read as (0 = never written).
using Model = std::map<uint64_t, uint64_t>;  // block -> tag

void WriteTagged(SimEnv& env, LsmVolume& v, Model& m, uint64_t tag, uint64_t first, uint64_t n) {
  REQUIRE(RunSim(env, v.Write(first * kBlock, Blocks(tag, first, n), {})).ok());
  REQUIRE(RunSim(env, v.Flush()).ok());
  for (uint64_t b = first; b < first + n; ++b) m[b] = tag;
}

uint8_t Expected(const Model& m, uint64_t block) {
  auto it = m.find(block);
  return it == m.end() ? 0 : Fill(it->second, block);
}

std::vector<std::string> Keys(SimEnv& env, objstore::MemoryStore& s) {
  auto listed = RunSim(env, s.List(""));
  REQUIRE(listed.ok());
  std::vector<std::string> keys;
  for (const auto& o : *listed) keys.push_back(o.key);
  return keys;
}

// Writes 6 segments of user data (fence first, so ids 2..7), no memtable flush: every
// data segment is above applied_segment, in the replay log.
Model WriteSixSegments(objstore::MemoryStore& mem) {
  SimEnv env;
  Model m;
  auto v = *RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  for (uint64_t i = 0; i < 6; ++i) WriteTagged(env, *v, m, 1 + i, i * 8, 12);  // overlapping
  REQUIRE(RunSim(env, v->Close()).ok());
  return m;
}

TEST_CASE("a segment missing below a later one refuses the open, names it, writes nothing",
          "[volume][damage]") {
  objstore::MemoryStore mem;
  Model m = WriteSixSegments(mem);
  SimEnv env;
  REQUIRE(RunSim(env, mem.Delete(SegmentKey(4))).ok());
  const auto before = Keys(env, mem);

  auto v = RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  REQUIRE_FALSE(v.ok());
  INFO(v.status().ToString());
  CHECK(v.status().IsCorruption());
  CHECK_THAT(v.status().message(), Catch::Contains(SegmentKey(4)));
  CHECK_THAT(v.status().message(), Catch::Contains("--salvage"));
  CHECK(Keys(env, mem) == before);  // no opener manifest, no fence: nothing at all

  // Again, the same answer (nothing was moved by the refusal).
  auto again = RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  CHECK(again.status().IsCorruption());
}

TEST_CASE("salvage opens a damaged volume read-only at the gap", "[volume][damage]") {
  objstore::MemoryStore mem;
  WriteSixSegments(mem);
  SimEnv env;
  REQUIRE(RunSim(env, mem.Delete(SegmentKey(4))).ok());
  const auto before = Keys(env, mem);

  VolumeOptions o = DamageOptions();
  o.salvage = true;
  auto v = RunSim(env, LsmVolume::Open(env, mem, o));
  REQUIRE(v.ok());
  CHECK((*v)->read_only());
  // As of segment 3 (writes 1 and 2 of ids 2, 3): blocks 0..19 hold tags 1, 2.
  Model expect;
  for (uint64_t b = 0; b < 12; ++b) expect[b] = 1;
  for (uint64_t b = 8; b < 20; ++b) expect[b] = 2;
  std::vector<uint8_t> got(kDevice);
  REQUIRE(RunSim(env, (*v)->Read(0, got, nullptr)).ok());
  for (uint64_t b = 0; b < kDevice / kBlock; ++b) {
    INFO("block " << b);
    REQUIRE(got[b * kBlock] == Expected(expect, b));
  }
  auto w = RunSim(env, (*v)->Write(0, Blocks(9, 0, 1), {}));
  CHECK(w.code() == Status::Code::kPermissionDenied);
  CHECK(RunSim(env, (*v)->CreateSnapshot("s")).status().code() ==
        Status::Code::kPermissionDenied);
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  CHECK(Keys(env, mem) == before);  // salvage writes nothing
}

TEST_CASE("a gap at the newest segment is a crash: the volume opens and fences",
          "[volume][damage]") {
  objstore::MemoryStore mem;
  Model m = WriteSixSegments(mem);
  SimEnv env;
  REQUIRE(RunSim(env, mem.Delete(SegmentKey(7))).ok());  // the newest: nothing above it
  auto v = RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  REQUIRE(v.ok());
  REQUIRE(RunSim(env, (*v)->Write(0, Blocks(20, 0, 1), {})).ok());
  REQUIRE(RunSim(env, (*v)->Flush()).ok());  // its fence took id 7; the write id 8
  REQUIRE(RunSim(env, (*v)->Close()).ok());
  CHECK(RunSim(env, mem.Head(SegmentKey(8))).ok());
}

TEST_CASE("a lost latest manifest of a newer epoch refuses the open, names it, writes nothing",
          "[volume][damage]") {
  objstore::MemoryStore mem;
  Model m = WriteSixSegments(mem);  // epoch 1: manifest 1
  {
    SimEnv env;  // epoch 2: manifest 2 opens it, then one more write
    auto v = *RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
    WriteTagged(env, *v, m, 30, 0, 4);
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  SimEnv env;
  REQUIRE(RunSim(env, mem.Delete(ManifestKey(2))).ok());
  const auto before = Keys(env, mem);
  auto v = RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  REQUIRE_FALSE(v.ok());
  INFO(v.status().ToString());
  CHECK(v.status().IsCorruption());
  CHECK_THAT(v.status().message(), Catch::Contains(ManifestKey(2) + " is missing"));
  CHECK_THAT(v.status().message(), Catch::Contains("epoch 2"));
  CHECK(Keys(env, mem) == before);
}

TEST_CASE("segments with no manifest left refuse the open, name manifest 1, write nothing",
          "[volume][damage]") {
  // dst seed 394565855: the only manifest deleted; the open took the store for a new
  // volume, wrote manifest 1 again and only then tripped over the old epoch-1 segments.
  objstore::MemoryStore mem;
  WriteSixSegments(mem);
  SimEnv env;
  for (const auto& key : Keys(env, mem)) {
    if (key.rfind("manifest/", 0) == 0) REQUIRE(RunSim(env, mem.Delete(key)).ok());
  }
  const auto before = Keys(env, mem);
  auto v = RunSim(env, LsmVolume::Open(env, mem, DamageOptions()));
  REQUIRE_FALSE(v.ok());
  INFO(v.status().ToString());
  CHECK(v.status().IsCorruption());
  CHECK_THAT(v.status().message(), Catch::Contains(ManifestKey(1)));
  CHECK_THAT(v.status().message(), Catch::Contains("no manifest"));
  CHECK(Keys(env, mem) == before);  // no manifest 1 written over the old data

  objstore::MemoryStore fresh;  // an empty store is still a new volume
  auto n = RunSim(env, LsmVolume::Open(env, fresh, DamageOptions()));
  REQUIRE(n.ok());
  REQUIRE(RunSim(env, (*n)->Close()).ok());
}

TEST_CASE("a v1 footer above a gap is evidence too (id - 1 was stored before it)",
          "[volume][damage]") {
  // Version-1 footers carry no durable_through; they decode as id - 1, exact for the
  // writers that wrote them (one upload in flight).
  objstore::MemoryStore mem;
  WriteSixSegments(mem);
  SimEnv env;
  auto seg7 = RunSim(env, mem.Get(SegmentKey(7)));
  REQUIRE(seg7.ok());
  auto f = DecodeSegmentFooter(*seg7, seg7->size(), "seg7");
  REQUIRE(f.ok());
  CHECK(f->durable_through == 6);
}

// --- every object, every damage ---------------------------------------------------

enum class Damage { kDelete, kTruncate, kFlipData, kFlipTail };
const char* Name(Damage d) {
  switch (d) {
    case Damage::kDelete: return "deleted";
    case Damage::kTruncate: return "truncated";
    case Damage::kFlipData: return "bit-flipped (middle)";
    case Damage::kFlipTail: return "bit-flipped (tail)";
  }
  return "?";
}

void Copy(SimEnv& env, objstore::MemoryStore& from, objstore::MemoryStore& to) {
  for (const auto& key : Keys(env, from)) {
    auto data = RunSim(env, from.Get(key));
    REQUIRE(data.ok());
    REQUIRE(RunSim(env, to.Put(key, *data)).ok());
  }
}

void Apply(SimEnv& env, objstore::MemoryStore& s, const std::string& key, Damage d) {
  if (d == Damage::kDelete) {
    REQUIRE(RunSim(env, s.Delete(key)).ok());
    return;
  }
  auto data = RunSim(env, s.Get(key));
  REQUIRE(data.ok());
  std::string bytes = std::move(*data);
  REQUIRE(!bytes.empty());
  if (d == Damage::kTruncate) bytes.resize(bytes.size() / 2);
  if (d == Damage::kFlipData) bytes[bytes.size() / 2] ^= 0x10;
  if (d == Damage::kFlipTail) bytes[bytes.size() > 30 ? bytes.size() - 30 : 0] ^= 0x10;
  REQUIRE(RunSim(env, s.Put(key, bytes)).ok());
}

enum class Seen { kNoEffect, kRefused, kReadError };
const char* Name(Seen s) {
  switch (s) {
    case Seen::kNoEffect: return "no effect";
    case Seen::kRefused: return "open refused";
    case Seen::kReadError: return "read error";
  }
  return "?";
}

// Opens the damaged copy and reads the device and the snapshot: every block is exactly
// the model's or its read fails; a failure names the damaged object. Returns what a
// user saw.
Seen Examine(objstore::MemoryStore& store, const std::string& key, const Model& now,
             const Model& at_snap) {
  SimEnv env;
  auto v = RunSim(env, LsmVolume::Open(env, store, DamageOptions()));
  if (!v.ok()) {
    INFO(v.status().ToString());
    // A refusal names what is damaged. A lost latest manifest is not named (nothing
    // points at it); the open then stops at what the older manifest lacks.
    if (!key.starts_with("manifest/")) CHECK_THAT(v.status().ToString(), Catch::Contains(key));
    CHECK_FALSE(v.status().retryable());
    return Seen::kRefused;
  }
  Seen seen = Seen::kNoEffect;
  auto check = [&](BlockDevice& dev, const Model& m) {
    for (uint64_t b = 0; b < kDevice / kBlock; ++b) {
      std::vector<uint8_t> got(kBlock);
      Status st = RunSim(env, dev.Read(b * kBlock, got, nullptr));
      if (!st.ok()) {
        INFO("block " << b << ": " << st.ToString());
        CHECK_THAT(st.ToString(), Catch::Contains(key));
        seen = Seen::kReadError;
        continue;
      }
      INFO("block " << b);
      REQUIRE(got[0] == Expected(m, b));
      REQUIRE(got[kBlock - 1] == Expected(m, b));
    }
  };
  check(**v, now);
  REQUIRE((*v)->ListSnapshots().size() == 1);  // a damaged snapshot stays listed
  auto snap = (*v)->OpenSnapshot("s1");
  if (snap.ok()) {
    check(**snap, at_snap);
    snap->reset();
  } else {
    INFO(snap.status().ToString());
    CHECK_THAT(snap.status().ToString(), Catch::Contains(key));
    CHECK(RunSim(env, (*v)->RestoreSnapshot("s1")).ToString() == snap.status().ToString());
    seen = Seen::kReadError;
  }
  (void)RunSim(env, (*v)->Close());
  return seen;
}

TEST_CASE("every object of a store, deleted, truncated or bit-flipped: refused, EIO or no "
          "effect, never old data",
          "[volume][damage]") {
  // A store with every kind of object: data segments on both sides of applied_segment,
  // map SSTs on two levels, manifests, a snapshot object, fences of three epochs.
  objstore::MemoryStore base;
  Model now, at_snap;
  {
    SimEnv env;
    auto v = *RunSim(env, LsmVolume::Open(env, base, DamageOptions()));
    for (uint64_t i = 0; i < 4; ++i) WriteTagged(env, *v, now, 1 + i, i * 10, 16);
    REQUIRE(RunSim(env, v->FlushMemtable()).ok());
    REQUIRE(RunSim(env, v->CompactAll()).ok());
    WriteTagged(env, *v, now, 5, 100, 8);
    REQUIRE(RunSim(env, v->CreateSnapshot("s1")).ok());
    at_snap = now;
    for (uint64_t i = 0; i < 3; ++i) WriteTagged(env, *v, now, 6 + i, 20 + i * 30, 10);
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  {
    // A clean second run: the newest object is its fence, so no data segment is the
    // newest (damage there would look like a crash: docs/volume.md "Damage").
    SimEnv env;
    auto v = *RunSim(env, LsmVolume::Open(env, base, DamageOptions()));
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  SimEnv env;
  const auto keys = Keys(env, base);
  std::map<std::string, std::map<std::string, int>> table;  // kind -> outcome -> count
  std::set<std::string> kinds;
  for (const auto& key : keys) {
    const std::string kind = key.substr(0, key.find('/'));
    kinds.insert(kind);
    for (Damage d : {Damage::kDelete, Damage::kTruncate, Damage::kFlipData, Damage::kFlipTail}) {
      INFO(key << " " << Name(d));
      objstore::MemoryStore damaged;
      Copy(env, base, damaged);
      Apply(env, damaged, key, d);
      Seen seen = Examine(damaged, key, now, at_snap);
      ++table[kind + " " + Name(d)][Name(seen)];
    }
  }
  CHECK(kinds == std::set<std::string>{"manifest", "map", "seg", "snap"});
  std::string report;
  for (const auto& [what, outcomes] : table) {
    report += "\n  " + what + ":";
    for (const auto& [o, n] : outcomes) report += fmt::format(" {}={}", o, n);
  }
  WARN("what a user sees, per object kind and damage:" << report);
}

}  // namespace
}  // namespace portal::volume
