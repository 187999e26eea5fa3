// Encryption at rest through the volume: every object it writes is sealed, a missing or
// wrong key stops open with a message saying so, rotation keeps old objects readable.
#include <catch2/catch.hpp>
#include <map>

#include "cache/disk_cache.h"
#include "crypto/aead.h"
#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/memory_cache_files.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr std::string_view kMarker = "PLAINTEXT-MARKER-0123456789";

std::shared_ptr<const crypto::Keyring> Ring(std::vector<char> fills) {
  std::vector<std::string> keys;
  for (char c : fills) keys.emplace_back(crypto::kKeyBytes, c);
  auto r = crypto::Keyring::FromKeys(std::move(keys));
  REQUIRE(r.ok());
  return *r;
}

VolumeOptions Options(const crypto::Keyring* ring, bool memory_like = false) {
  VolumeOptions o = testing::SmallVolumeOptions(1 << 20);
  o.keyring = ring;
  o.gc_grace_ms = 1000;
  o.gc_interval_ms = 1000;
  o.immediate_segment_free = memory_like;
  o.compress = !memory_like;
  o.read_partial_raw_chunks = memory_like;
  return o;
}

// A block that says kMarker over and over, with its tag.
std::vector<uint8_t> Block(uint64_t tag) {
  std::string s;
  while (s.size() < 4096) s += std::string(kMarker) + std::to_string(tag) + ";";
  s.resize(4096);
  return std::vector<uint8_t>(s.begin(), s.end());
}

Result<std::shared_ptr<LsmVolume>> TryOpen(SimEnv& env, objstore::ObjectStore& store,
                                           VolumeOptions o) {
  return RunSim(env, LsmVolume::Open(env, store, o));
}

std::shared_ptr<LsmVolume> Open(SimEnv& env, objstore::ObjectStore& store, VolumeOptions o) {
  auto v = TryOpen(env, store, o);
  if (!v.ok()) FAIL("open failed: " << v.status().ToString());
  return *v;
}

void Churn(SimEnv& env, LsmVolume& v, std::map<uint64_t, uint64_t>* model, int writes,
           uint64_t seed) {
  Prng rng(seed);
  for (int i = 0; i < writes; ++i) {
    const uint64_t blk = rng.Below(64), tag = rng.Next() % 100000 + 1;
    REQUIRE(RunSim(env, v.Write(blk * 4096, Block(tag), {})).ok());
    (*model)[blk] = tag;
    if (i % 20 == 19) REQUIRE(RunSim(env, v.Flush()).ok());
  }
  REQUIRE(RunSim(env, v.Flush()).ok());
}

void Verify(SimEnv& env, LsmVolume& v, const std::map<uint64_t, uint64_t>& model) {
  for (const auto& [blk, tag] : model) {
    INFO("block " << blk);
    REQUIRE(testing::ReadDevice(env, v, blk * 4096, 4096) == Block(tag));
  }
}

// Every object: no plaintext marker; every segment, map SST, manifest and snapshot object
// sealed under one of `ids`. Returns how many of each prefix it saw.
std::map<std::string, int> ScanStore(SimEnv& env, objstore::MemoryStore& store,
                                     const std::vector<std::string>& ids) {
  std::map<std::string, int> seen;
  auto listed = RunSim(env, store.List(""));
  REQUIRE(listed.ok());
  for (const auto& o : *listed) {
    auto bytes = RunSim(env, store.Get(o.key));
    REQUIRE(bytes.ok());
    INFO("object " << o.key);
    CHECK(bytes->find(kMarker.substr(0, 12)) == std::string::npos);
    const std::string prefix = o.key.substr(0, o.key.find('/') + 1);
    ++seen[prefix];
    std::string id;
    if (prefix == "manifest/" || prefix == "snap/") {
      id = crypto::HeaderKeyId(*bytes);
    } else if (prefix == "seg/" || prefix == "map/") {
      // The trailer's footer length, then the sealed footer's header.
      REQUIRE(bytes->size() >= 20);
      const auto* t = reinterpret_cast<const uint8_t*>(bytes->data() + bytes->size() - 20);
      const uint32_t len = t[0] | t[1] << 8 | t[2] << 16 | uint32_t{t[3]} << 24;
      REQUIRE(bytes->size() >= 20 + len);
      id = crypto::HeaderKeyId(std::string_view(*bytes).substr(bytes->size() - 20 - len));
    } else {
      continue;
    }
    CHECK(std::find(ids.begin(), ids.end(), id) != ids.end());
  }
  return seen;
}

TEST_CASE("encrypted volume: reopens with its key, and without it or with another open says so",
          "[volume][crypto]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto ring = Ring({'a'});
  std::map<uint64_t, uint64_t> model;
  {
    auto v = Open(env, store, Options(ring.get()));
    Churn(env, *v, &model, 100, 1);
    REQUIRE(RunSim(env, v->FlushMemtable()).ok());
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  auto seen = ScanStore(env, store, {ring->key_id()});
  CHECK(seen["seg/"] > 0);
  CHECK(seen["map/"] > 0);
  CHECK(seen["manifest/"] > 0);
  {
    auto v = Open(env, store, Options(ring.get()));
    Verify(env, *v, model);
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  auto none = TryOpen(env, store, Options(nullptr));
  REQUIRE(!none.ok());
  CHECK(none.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(none.status().message(), Catch::Contains("encrypted") &&
                                          Catch::Contains(ring->key_id()) &&
                                          Catch::Contains("encryption_key_file"));
  auto other = Ring({'b'});
  auto wrong = TryOpen(env, store, Options(other.get()));
  REQUIRE(!wrong.ok());
  CHECK(wrong.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(wrong.status().message(),
             Catch::Contains("wrong encryption_key_file") && Catch::Contains(ring->key_id()));
  // Neither failed open wrote anything: the right key still opens the same data.
  auto v = Open(env, store, Options(ring.get()));
  Verify(env, *v, model);
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("an unencrypted volume opens without a key and refuses one", "[volume][crypto]") {
  SimEnv env;
  objstore::MemoryStore store;
  std::map<uint64_t, uint64_t> model;
  {
    auto v = Open(env, store, Options(nullptr));
    Churn(env, *v, &model, 40, 2);
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  auto ring = Ring({'a'});
  auto keyed = TryOpen(env, store, Options(ring.get()));
  REQUIRE(!keyed.ok());
  CHECK(keyed.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(keyed.status().message(), Catch::Contains("not encrypted"));
  auto v = Open(env, store, Options(nullptr));
  Verify(env, *v, model);
  REQUIRE(RunSim(env, v->Close()).ok());
}

TEST_CASE("encrypted volume: snapshots, restore, compaction and GC stay sealed",
          "[volume][crypto]") {
  for (bool memory_like : {false, true}) {
    INFO("memory_like " << memory_like);
    SimEnv env;
    objstore::MemoryStore store;
    auto ring = Ring({'a'});
    std::map<uint64_t, uint64_t> model, at_snap;
    auto v = Open(env, store, Options(ring.get(), memory_like));
    Churn(env, *v, &model, 150, 3);
    REQUIRE(RunSim(env, v->CreateSnapshot("s1")).ok());
    at_snap = model;
    for (int round = 0; round < 4; ++round) {
      Churn(env, *v, &model, 150, 10 + round);
      REQUIRE(RunSim(env, v->FlushMemtable()).ok());
      REQUIRE(RunSim(env, v->CompactAll()).ok());
      env.AdvanceBy(5'000'000'000);
      REQUIRE(RunSim(env, v->RunGc()).ok());
      REQUIRE(RunSim(env, v->Flush()).ok());  // uploads a relocation batch
    }
    Verify(env, *v, model);
    REQUIRE(RunSim(env, v->RestoreSnapshot("s1")).ok());
    Verify(env, *v, at_snap);
    REQUIRE(RunSim(env, v->Close()).ok());
    auto seen = ScanStore(env, store, {ring->key_id()});
    CHECK(seen["snap/"] == 1);
    auto v2 = Open(env, store, Options(ring.get(), memory_like));
    Verify(env, *v2, at_snap);
    REQUIRE(RunSim(env, v2->Close()).ok());
  }
}

TEST_CASE("key rotation: old objects stay readable, new ones are under the new key",
          "[volume][crypto]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto old_ring = Ring({'a'});
  std::map<uint64_t, uint64_t> model;
  {
    auto v = Open(env, store, Options(old_ring.get()));
    Churn(env, *v, &model, 60, 4);
    REQUIRE(RunSim(env, v->FlushMemtable()).ok());
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  auto rotated = Ring({'b', 'a'});  // encryption_key_file = b, old = [a]
  auto v = Open(env, store, Options(rotated.get()));
  Verify(env, *v, model);  // old segments and SSTs, through the old key
  Churn(env, *v, &model, 60, 5);
  REQUIRE(RunSim(env, v->FlushMemtable()).ok());
  REQUIRE(RunSim(env, v->Close()).ok());
  // The newest manifest records the new key.
  auto listed = RunSim(env, store.List("manifest/"));
  REQUIRE(listed.ok());
  auto newest = RunSim(env, store.Get(listed->back().key));
  REQUIRE(newest.ok());
  CHECK(crypto::HeaderKeyId(*newest) == rotated->key_id());
  ScanStore(env, store, {rotated->key_id(), old_ring->key_id()});
  auto v2 = Open(env, store, Options(rotated.get()));
  Verify(env, *v2, model);
  REQUIRE(RunSim(env, v2->Close()).ok());
}

TEST_CASE("encrypted volume: a flipped bit in a segment is Corruption naming it",
          "[volume][crypto]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto ring = Ring({'a'});
  {
    auto v = Open(env, store, Options(ring.get()));
    REQUIRE(RunSim(env, v->Write(0, Block(7), {})).ok());
    REQUIRE(RunSim(env, v->Flush()).ok());
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  auto segs = RunSim(env, store.List("seg/"));
  REQUIRE(segs.ok());
  std::string key;
  std::string bytes;
  for (const auto& o : *segs) {  // the segment holding data (the other is the fence)
    auto b = RunSim(env, store.Get(o.key));
    REQUIRE(b.ok());
    if (b->size() > bytes.size()) key = o.key, bytes = *b;
  }
  bytes[10] = static_cast<char>(bytes[10] ^ 0x04);  // inside the first chunk's ciphertext
  REQUIRE(RunSim(env, store.Put(key, bytes)).ok());
  auto v = Open(env, store, Options(ring.get()));
  std::vector<uint8_t> out(4096);
  Status st = RunSim(env, v->Read(0, out, nullptr));
  CHECK(st.IsCorruption());
  CHECK_THAT(st.message(), Catch::Contains(key) && Catch::Contains("authentication"));
  (void)RunSim(env, v->Close());
}

TEST_CASE("encrypted volume: the disk cache serves written chunks, never unauthenticated ones",
          "[volume][crypto]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto ring = Ring({'a'});
  auto files = std::make_shared<testing::MemoryCacheFiles::Disk>();
  auto start_cache = [&] {
    auto c = std::make_unique<cache::DiskCache>(
        env, std::make_unique<testing::MemoryCacheFiles>(files), 64 << 20);
    RunSim(env, c->Load());
    return c;
  };
  std::map<uint64_t, uint64_t> model;
  {
    auto dc = start_cache();
    VolumeOptions o = Options(ring.get());
    o.disk_cache = dc.get();
    auto v = Open(env, store, o);
    Churn(env, *v, &model, 40, 6);
    REQUIRE(RunSim(env, v->Close()).ok());
    RunSim(env, dc->Drain());
    CHECK(dc->stats().inserts > 0);  // our own settled chunks (KeepWritten)
  }
  {
    auto dc = start_cache();  // warm: reads hit it
    VolumeOptions o = Options(ring.get());
    o.disk_cache = dc.get();
    auto v = Open(env, store, o);
    Verify(env, *v, model);
    CHECK(dc->stats().hits > 0);
    REQUIRE(RunSim(env, v->Close()).ok());
  }
  // Every chunk of every segment damaged in the store, the disk cache lost: nothing that
  // fails authentication may reach the cache.
  auto segs = RunSim(env, store.List("seg/"));
  REQUIRE(segs.ok());
  for (const auto& obj : *segs) {
    auto b = RunSim(env, store.Get(obj.key));
    REQUIRE(b.ok());
    std::string bytes = *b;
    for (size_t at = 0; at + 200 < bytes.size(); at += 64) bytes[at] ^= 0x01;
    REQUIRE(RunSim(env, store.Put(obj.key, bytes)).ok());
  }
  files->Clear();
  auto dc = start_cache();
  VolumeOptions o = Options(ring.get());
  o.disk_cache = dc.get();
  auto v = TryOpen(env, store, o);
  if (v.ok()) {
    std::vector<uint8_t> out(4096);
    for (const auto& [blk, tag] : model) {
      Status st = RunSim(env, (*v)->Read(blk * 4096, out, nullptr));
      CHECK(st.IsCorruption());
    }
    RunSim(env, dc->Drain());
    (void)RunSim(env, (*v)->Close());
  } else {
    CHECK(v.status().IsCorruption());  // a damaged footer refused at replay
  }
  CHECK(dc->stats().inserts == 0);
}

}  // namespace
}  // namespace portal::volume
