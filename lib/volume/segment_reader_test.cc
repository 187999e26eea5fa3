#include "volume/segment_reader.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "objstore/retrying_store.h"
#include "testing/body_damage.h"
#include "testing/borrowed_store.h"
#include "volume/manifest.h"

namespace portal::volume {
namespace {

constexpr uint64_t kId = 7;
constexpr uint64_t kBlocks = 40;  // chunks of 16, 16 and 8 blocks

std::string Data(bool compressible) {
  std::string d(kBlocks * 4096, '\0');
  uint64_t x = 99;
  for (size_t i = 0; i < d.size(); ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = compressible ? static_cast<char>('a' + (i / 4096) % 5) : static_cast<char>(x >> 56);
  }
  return d;
}

// One stored segment behind a FaultStore whose GETs of seg/ keys BodyDamage spoils.
struct Fixture {
  explicit Fixture(bool compress) : data(Data(compress)) {
    damage.prefix = "seg/";
    footer.segment_id = kId;
    footer.epoch = 1;
    footer.block_size = 4096;
    footer.blocks_per_chunk = 16;
    footer.data_blocks = kBlocks;
    footer.extents.push_back({{0, kBlocks, lsm::Loc::Data(kId, 0)}, false, {}});
    EncodedSegment enc =
        EncodeSegment(&footer, SegmentContents{objstore::Rope(data), {}}, {compress, nullptr});
    size = enc.bytes.size();
    REQUIRE(RunSim(env, memory.Put(SegmentKey(kId), std::move(enc.bytes).Flatten())).ok());
  }
  std::string Read(uint64_t index, uint64_t n, Status* st) {
    std::string out(n * 4096, '\0');
    *st = RunSim(env, reader.ReadBlocks(kId, index, n, reinterpret_cast<uint8_t*>(out.data())));
    return out;
  }

  SimEnv env;
  objstore::MemoryStore memory;
  testing::BodyDamage damage;
  objstore::FaultStore store{std::make_unique<testing::BorrowedStore>(memory), env,
                             damage.Options()};
  cache::BlockCache cache{env, 16 << 20};  // 1 MiB a shard
  VolumeOptions options;
  std::atomic<uint64_t> refetches{0};
  SegmentReader reader{store, cache, options, nullptr, &refetches};
  std::string data;
  SegmentFooter footer;
  uint64_t size = 0;
};

TEST_CASE("segment reader: a chunk damaged on the way is fetched again and counted",
          "[volume][segment][refetch]") {
  for (bool compress : {false, true}) {
    INFO("compress " << compress);
    Fixture f(compress);
    f.reader.Remember(kId, f.size, f.footer);  // no footer GET: the first GET is the chunk
    f.damage.armed = true;
    Status st;
    CHECK(f.Read(18, 4, &st) == f.data.substr(18 * 4096, 4 * 4096));
    REQUIRE(st.ok());
    CHECK(f.refetches == 1);
    CHECK(f.damage.total_gets() == 2);
    // The cache holds the verified chunk: no more GETs for it.
    CHECK(f.Read(16, 16, &st) == f.data.substr(16 * 4096, 16 * 4096));
    REQUIRE(st.ok());
    CHECK(f.damage.total_gets() == 2);
  }
}

TEST_CASE("segment reader: a footer damaged on the way is fetched again and counted",
          "[volume][segment][refetch]") {
  Fixture f(true);
  f.damage.armed = true;
  Status st;
  // footer (damaged, again), then its 3 chunks in one GET
  CHECK(f.Read(0, kBlocks, &st) == f.data);
  REQUIRE(st.ok());
  CHECK(f.refetches == 1);
  CHECK(f.damage.total_gets() == 2 + 1);
}

TEST_CASE("segment reader: damage that persists is Corruption after a bounded number of GETs",
          "[volume][segment][refetch]") {
  Fixture f(true);
  f.reader.Remember(kId, f.size, f.footer);
  f.damage.armed = true;
  f.damage.always = true;
  Status st;
  (void)f.Read(20, 1, &st);
  CHECK(st.IsCorruption());
  CHECK(st.message().find(SegmentKey(kId) + " (chunk 1)") != std::string::npos);
  CHECK(st.message().find("failed verification 3 times") != std::string::npos);
  CHECK(f.damage.total_gets() == objstore::kVerifiedReadAttempts);
  CHECK(f.refetches == objstore::kVerifiedReadAttempts - 1);
  // Nothing that failed was cached: once the damage stops, the read succeeds.
  f.damage.always = false;
  CHECK(f.Read(20, 1, &st) == f.data.substr(20 * 4096, 4096));
  CHECK(st.ok());

  // The footer too: three GETs, then Corruption naming the segment.
  Fixture g(true);
  g.damage.armed = true;
  g.damage.always = true;
  (void)g.Read(0, 1, &st);
  CHECK(st.IsCorruption());
  CHECK(st.message().find(SegmentKey(kId)) != std::string::npos);
  CHECK(g.damage.total_gets() == objstore::kVerifiedReadAttempts);
}

TEST_CASE("segment reader: a missing segment is not fetched again", "[volume][segment][refetch]") {
  Fixture f(true);
  f.damage.armed = true;
  Status st = RunSim(f.env, f.reader.ReadFooter(kId + 1, f.size)).status();
  CHECK(st.IsNotFound());
  CHECK(f.damage.total_gets() == 1);
  CHECK(f.refetches == 0);
}

TEST_CASE("segment reader: a segment of another block size is Corruption and no overrun",
          "[volume][segment]") {
  // The footer's checksum holds, but its blocks are 4096 bytes in a volume of 1024-byte
  // blocks: copying them would write 4x past the caller's buffer.
  Fixture f(false);
  f.options.block_size = 1024;
  Status st;
  std::string out(4 * 4096, '\0');  // room enough that the unfixed reader only misreads
  st = RunSim(f.env, f.reader.ReadBlocks(kId, 0, 1, reinterpret_cast<uint8_t*>(out.data())));
  CHECK(st.IsCorruption());
  CHECK_THAT(st.ToString(), Catch::Contains("block size 4096"));
  auto footer = RunSim(f.env, f.reader.ReadFooter(kId, 0));
  CHECK(footer.status().IsCorruption());
}

}  // namespace
}  // namespace portal::volume
