// Reads that use the bandwidth (issue 15): read-ahead of sequential streams, coalesced
// chunk GETs, single flight over ranges, the in-flight bound, and a failing store.
// Everything runs on the simulated Env behind a store that charges each GET a latency and
// a transfer time, so time and GETs are exact.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/borrowed_store.h"
#include "testing/testing.h"
#include "testing/volume_options.h"
#include "util/buffer_pool.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A store over a MemoryStore that delays each GET (latency + bytes * ns_per_byte), records
// the segment GETs, tracks the data bytes in flight, and fails or holds the GETs `fail`
// names (after the delay and `fail_delay_ns`).
class ModelStore final : public testing::BorrowedStore {
 public:
  struct Fetch {
    std::string key;
    uint64_t offset, length;
  };
  ModelStore(SimEnv& env, objstore::MemoryStore& inner)
      : BorrowedStore(inner), env_(env), inner_(inner) {}

  uint64_t latency_ns = 0;
  uint64_t ns_per_byte = 0;
  std::vector<Fetch> gets;  // of seg/ objects
  // Bytes of segment data GETs (not footer reads) in flight, and the most at once.
  uint64_t in_flight = 0, max_in_flight = 0;
  // A non-OK status fails the GET (after fail_delay_ns more).
  std::function<Status(const std::string& key, uint64_t length)> fail;
  uint64_t fail_delay_ns = 0;
  std::map<std::string, uint64_t> sizes;  // seg/ object sizes (tail reads are footers)

  void LearnSizes() {
    auto listed = RunSim(env_, inner_.List("seg/"));
    REQUIRE(listed.ok());
    for (const auto& o : *listed) sizes[o.key] = o.size;
  }
  size_t DataGets() const {
    return std::count_if(gets.begin(), gets.end(), [&](const Fetch& g) { return IsData(g); });
  }
  bool IsData(const Fetch& g) const {
    auto it = sizes.find(g.key);
    return it != sizes.end() && g.offset + g.length < it->second;
  }
  uint64_t MaxDataGet() const {
    uint64_t m = 0;
    for (const Fetch& g : gets) {
      if (IsData(g)) m = std::max(m, g.length);
    }
    return m;
  }

  Task<Result<std::string>> Get(std::string key,
                                std::optional<objstore::GetRange> range = {}) override {
    uint64_t length = range ? range->length : 0;
    Fetch g{key, range ? range->offset : 0, length};
    const bool seg = key.starts_with("seg/");
    const bool data = seg && IsData(g);
    if (seg) gets.push_back(g);
    if (data) {
      in_flight += length;
      max_in_flight = std::max(max_in_flight, in_flight);
    }
    co_await SleepFor(env_, latency_ns + length * ns_per_byte);
    Status st = fail ? fail(key, length) : Status::Ok();
    if (!st.ok() && fail_delay_ns) co_await SleepFor(env_, fail_delay_ns);
    if (data) in_flight -= length;
    if (!st.ok()) co_return st;
    co_return co_await inner_.Get(std::move(key), range);
  }
  Task<Result<objstore::ObjectInfo>> Head(std::string key) override {
    if (key.starts_with("seg/")) ++seg_heads;
    co_await SleepFor(env_, latency_ns);
    co_return co_await inner_.Head(std::move(key));
  }
  std::string url() const override { return "model://"; }
  size_t seg_heads = 0;

 private:
  SimEnv& env_;
  objstore::MemoryStore& inner_;
};

uint8_t PatternByte(uint64_t off) {
  return static_cast<uint8_t>((off >> 12) * 131 + (off & 0xfff) * 7 + (off >> 20));
}

VolumeOptions Options(uint32_t blocks_per_chunk = 16) {
  VolumeOptions o = testing::SmallVolumeOptions(64 * kMiB);
  o.l0_sst_size_bytes = 4 * kMiB;  // 4 MiB segments, as sequential writes make them
  o.max_unflushed_bytes = 16 * kMiB;
  o.block_cache_size_bytes = 64 * kMiB;
  o.blocks_per_chunk = blocks_per_chunk;
  o.compress = false;
  return o;
}

// A store holding `bytes` of pattern data at offset 0, written sequentially and closed.
struct Written {
  explicit Written(uint64_t bytes, VolumeOptions o = Options()) : options(o) {
    auto v = RunSim(env, LsmVolume::Open(env, memory, options));
    REQUIRE(v.ok());
    std::vector<uint8_t> buf(kMiB);
    for (uint64_t off = 0; off < bytes; off += kMiB) {
      for (uint64_t i = 0; i < kMiB; ++i) buf[i] = PatternByte(off + i);
      REQUIRE(RunSim(env, (*v)->Write(off, buf, {})).ok());
    }
    REQUIRE(RunSim(env, (*v)->Close()).ok());
    model.LearnSizes();
    model.latency_ns = 25 * kNanosPerMilli;  // S3 in region
    model.ns_per_byte = 7;                   // ~150 MB/s per connection
  }
  std::shared_ptr<LsmVolume> Reopen(VolumeOptions o) {
    auto v = RunSim(env, LsmVolume::Open(env, model, o));
    REQUIRE(v.ok());
    model.gets.clear();
    return *v;
  }
  std::shared_ptr<LsmVolume> Reopen() { return Reopen(options); }
  // Reads and checks [off, off + n); returns the simulated time it took.
  uint64_t ReadChecked(LsmVolume& v, uint64_t off, uint64_t n) {
    std::vector<uint8_t> out(n);
    const uint64_t t0 = env.NowNanos();
    Status st = RunSim(env, v.Read(off, out, nullptr));
    REQUIRE(st.ok());
    for (uint64_t i = 0; i < n; ++i) {
      if (out[i] != PatternByte(off + i)) FAIL("wrong byte at " << off + i);
    }
    return env.NowNanos() - t0;
  }

  VolumeOptions options;
  SimEnv env;
  objstore::MemoryStore memory;
  ModelStore model{env, memory};
};

TEST_CASE("a sequential read after reopen costs few, large GETs", "[volume][readahead]") {
  Written w(16 * kMiB);
  auto v = w.Reopen();
  const uint64_t t0 = w.env.NowNanos();
  for (uint64_t off = 0; off < 16 * kMiB; off += 128 * 1024) w.ReadChecked(*v, off, 128 * 1024);
  const double secs = static_cast<double>(w.env.NowNanos() - t0) / kNanosPerSecond;
  const size_t chunks = 16 * kMiB / (64 * 1024);
  INFO("data GETs " << w.model.DataGets() << " for " << chunks << " chunks, largest "
                    << w.model.MaxDataGet() << " bytes, " << 16 / secs << " MiB/s modelled");
  CHECK(w.model.DataGets() * 8 <= chunks);
  CHECK(w.model.MaxDataGet() >= 2 * kMiB);
  auto s = v->stats();
  CHECK(s.read_ahead_gets > 0);
  CHECK(s.read_ahead_hits > 0);
  CHECK(s.read_ahead_failed == 0);
  CHECK(16 / secs > 50);  // vs ~2.5 MiB/s for a GET per 64 KiB chunk, one at a time
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("a cold random 4 KiB read costs one GET of at most one chunk", "[volume][readahead]") {
  Written w(8 * kMiB);
  auto v = w.Reopen();
  // Footers first (one read per segment), then scattered 4 KiB reads: one GET each.
  w.ReadChecked(*v, 0, 4096);
  w.ReadChecked(*v, 4 * kMiB, 4096);
  const uint64_t offsets[] = {3 * kMiB + 8192, 700 * 1024, 6 * kMiB + 4096, 1 * kMiB + 12288,
                              5 * kMiB + 65536 * 3 + 4096};
  for (uint64_t off : offsets) {
    const size_t before = w.model.gets.size();
    w.ReadChecked(*v, off, 4096);
    REQUIRE(w.model.gets.size() == before + 1);
    CHECK(w.model.IsData(w.model.gets.back()));
    CHECK(w.model.gets.back().length <= 64 * 1024);
  }
  CHECK(v->stats().read_ahead_gets == 0);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("concurrent reads of the same chunks cost one GET", "[volume][readahead]") {
  Written w(4 * kMiB);
  auto v = w.Reopen();
  w.ReadChecked(*v, 3 * kMiB, 4096);  // the footer
  const size_t before = w.model.gets.size();
  // A read of chunks 0-3 and, while its GET is out, reads inside chunks 1 and 3.
  std::vector<uint8_t> a(256 * 1024), b(4096), c(8192);
  int done = 0;
  Start(v->Read(0, a, nullptr), [&](Status st) { done += st.ok(); });
  Start(v->Read(64 * 1024 + 4096, b, nullptr), [&](Status st) { done += st.ok(); });
  Start(v->Read(3 * 64 * 1024, c, nullptr), [&](Status st) { done += st.ok(); });
  REQUIRE(w.env.RunUntil([&] { return done == 3; }));
  CHECK(w.model.gets.size() == before + 1);
  CHECK(w.model.gets.back().length == 256 * 1024);
  for (uint64_t i = 0; i < b.size(); ++i) REQUIRE(b[i] == PatternByte(64 * 1024 + 4096 + i));
  for (uint64_t i = 0; i < c.size(); ++i) REQUIRE(c[i] == PatternByte(3 * 64 * 1024 + i));
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

// Sequential reads until read-ahead GETs are out; returns the next offset to read.
uint64_t StartStream(Written& w, LsmVolume& v) {
  uint64_t off = 0;
  for (; off < 2 * kMiB; off += 256 * 1024) w.ReadChecked(v, off, 256 * 1024);
  return off;
}

TEST_CASE("a read never waits behind a read-ahead GET that fails slowly", "[volume][readahead]") {
  Written w(8 * kMiB);
  auto v = w.Reopen();
  // From now on every large GET (a read-ahead's) takes 10 s more and then fails, as one
  // retried inside the store would; the reads' own GETs (<= 256 KiB) are fine.
  w.model.fail = [](const std::string&, uint64_t length) {
    return length > 256 * 1024 ? Status::Unavailable("injected") : Status::Ok();
  };
  w.model.fail_delay_ns = 10 * kNanosPerSecond;
  const uint64_t off = StartStream(w, *v);
  const size_t large = std::count_if(w.model.gets.begin(), w.model.gets.end(),
                                     [](const auto& g) { return g.length > 256 * 1024; });
  REQUIRE(large > 0);  // read-ahead is out, and stuck
  // The next reads are in the stuck read-ahead's range: answered within the hedge and
  // their own GET (~27 ms), not after 10 s; and right.
  for (uint64_t o = off; o < off + kMiB; o += 256 * 1024) {
    CHECK(w.ReadChecked(*v, o, 256 * 1024) < 200 * kNanosPerMilli);
  }
  REQUIRE(RunSim(w.env, v->Close()).ok());
  CHECK(v->stats().read_ahead_failed > 0);
}

TEST_CASE("a read-ahead GET that fails hands its chunks back to the reads at once",
          "[volume][readahead]") {
  Written w(8 * kMiB);
  auto v = w.Reopen();
  // Large GETs fail after their transfer (a reset at the end); a damaged body fails
  // verification the same way. The reads fetch their own chunks, with the right bytes.
  bool damage = false;
  w.model.fail = [&](const std::string&, uint64_t length) {
    if (length <= 256 * 1024) return Status::Ok();
    return damage ? Status::Corruption("damaged body") : Status::Unavailable("reset");
  };
  uint64_t off = StartStream(w, *v);
  for (int round = 0; round < 2; ++round) {
    for (uint64_t end = off + 2 * kMiB; off < end; off += 256 * 1024) {
      CHECK(w.ReadChecked(*v, off, 256 * 1024) < 200 * kNanosPerMilli);
    }
    damage = true;
  }
  auto s = v->stats();
  CHECK(s.read_ahead_failed > 0);
  CHECK(s.read_ahead_gets == 0);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("read-ahead holds at most read_ahead_max_bytes in flight", "[volume][readahead]") {
  Written w(16 * kMiB);
  VolumeOptions o = w.options;
  o.read_ahead_max_bytes = 1 * kMiB;
  auto v = w.Reopen(o);
  for (uint64_t off = 0; off < 16 * kMiB; off += 256 * 1024) w.ReadChecked(*v, off, 256 * 1024);
  // The reads' own GETs (one of 256 KiB at a time) come on top of the bound.
  INFO("max data bytes in flight " << w.model.max_in_flight);
  CHECK(w.model.max_in_flight <= 1 * kMiB + 256 * 1024);
  CHECK(w.model.max_in_flight > 512 * 1024);  // read-ahead did run, up to its bound
  CHECK(v->stats().read_ahead_gets > 0);
  REQUIRE(RunSim(w.env, v->Close()).ok());

  o.read_ahead_max_bytes = 0;  // disabled
  v = w.Reopen(o);
  for (uint64_t off = 0; off < 4 * kMiB; off += 256 * 1024) w.ReadChecked(*v, off, 256 * 1024);
  CHECK(v->stats().read_ahead_gets == 0);
  CHECK(w.model.MaxDataGet() <= 256 * 1024);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

// Overwrites the blocks at `offsets` with the same bytes, `per_flush` blocks per FLUSH:
// small segments, as random writes with FLUSHes make them.
void OverwriteScattered(Written& w, LsmVolume& v, const std::vector<uint64_t>& offsets,
                        size_t per_flush) {
  std::vector<uint8_t> block(4096);
  for (size_t k = 0; k < offsets.size(); ++k) {
    for (uint64_t i = 0; i < 4096; ++i) block[i] = PatternByte(offsets[k] + i);
    REQUIRE(RunSim(w.env, v.Write(offsets[k], block, {})).ok());
    if (k % per_flush == per_flush - 1) REQUIRE(RunSim(w.env, v.Flush()).ok());
  }
}

TEST_CASE("a read over data overwritten here and there waits about one GET, not one per piece",
          "[volume][readahead]") {
  Written w(4 * kMiB);
  VolumeOptions o = w.options;
  o.read_ahead_max_bytes = 0;  // the read's own GETs only
  {
    auto v = w.Reopen(o);
    std::vector<uint64_t> offsets;  // block 3 of each of the first 16 chunks
    for (uint64_t k = 0; k < 16; ++k) offsets.push_back((16 * k + 3) * 4096);
    OverwriteScattered(w, *v, offsets, 2);  // 8 small segments
    REQUIRE(RunSim(w.env, v->Close()).ok());
  }
  w.model.LearnSizes();
  auto v = w.Reopen(o);
  w.ReadChecked(*v, 2 * kMiB, 4096);  // the big segment's footer and the map
  w.model.gets.clear();
  // 32 pieces: 16 of the big segment (one in each chunk), 16 of 8 small segments. Each
  // segment's pieces are one read, and all segments are read at once: a footer (HEAD and
  // GET) and a GET for each small segment, side by side with one GET of 1 MiB.
  const uint64_t t = w.ReadChecked(*v, 0, kMiB);
  const size_t big = std::count_if(w.model.gets.begin(), w.model.gets.end(), [&](const auto& g) {
    return w.model.IsData(g) && g.length >= 512 * 1024;
  });
  INFO("read took " << t / kNanosPerMilli << " ms, " << w.model.gets.size() << " GETs");
  CHECK(big == 1);
  CHECK(t < 200 * kNanosPerMilli);  // one piece at a time: 16 x (25 ms + 75 ms) and more
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("the footers of segments written here are read locally after a restart",
          "[volume][readahead]") {
  testing::TempDir dir;
  VolumeOptions o = Options();
  o.cache_dir = dir.path();  // where footers persist across restarts
  Written w(16 * kMiB, o);
  auto v = w.Reopen();
  w.model.seg_heads = 0;
  // One block of each 4 MiB segment: its chunk's GET and nothing else (no HEAD for the
  // object's size, no GET of its footer).
  for (uint64_t off = 0; off < 16 * kMiB; off += 4 * kMiB) w.ReadChecked(*v, off + 8192, 4096);
  // (A fence, 32 bytes, is read whole by GC's look at tiny segments: not a footer read.)
  const size_t footer_gets = std::count_if(w.model.gets.begin(), w.model.gets.end(), [&](const auto& g) {
    return !w.model.IsData(g) && w.model.sizes[g.key] > 4096;
  });
  INFO(w.model.gets.size() << " segment GETs, " << w.model.seg_heads << " HEADs");
  CHECK(w.model.seg_heads == 0);
  CHECK(footer_gets == 0);
  CHECK(w.model.DataGets() == 4);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("read-ahead over large segments issues 8 MiB GETs, a few at once, within its bound",
          "[volume][readahead]") {
  VolumeOptions o = Options();
  o.l0_sst_size_bytes = 16 * kMiB;
  o.max_unflushed_bytes = 64 * kMiB;
  o.block_cache_size_bytes = 256 * kMiB;  // a window of 32 MiB, as the daemon's default
  o.size_bytes = 128 * kMiB;
  Written w(96 * kMiB, o);
  auto v = w.Reopen();
  const uint64_t t0 = w.env.NowNanos();
  for (uint64_t off = 0; off < 96 * kMiB; off += kMiB) w.ReadChecked(*v, off, kMiB);
  const double secs = static_cast<double>(w.env.NowNanos() - t0) / kNanosPerSecond;
  INFO(w.model.DataGets() << " data GETs, largest " << w.model.MaxDataGet() << ", at most "
                          << w.model.max_in_flight << " bytes in flight, " << 96 / secs
                          << " MiB/s modelled");
  CHECK(w.model.MaxDataGet() == 8 * kMiB);
  CHECK(w.model.DataGets() < 96 / 4);  // 4 MiB GETs would take more than this
  CHECK(w.model.max_in_flight <= o.read_ahead_max_bytes + kMiB);
  CHECK(w.model.max_in_flight >= 16 * kMiB);  // several GETs out at once
  auto s = v->stats();
  CHECK(s.read_ahead_wasted == 0);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("the bodies of large GETs go back to the buffer pool once decoded",
          "[volume][readahead]") {
  // An S3 store receives large bodies into pooled strings (s3::HttpRequest::response_pool);
  // given back, the next large GET reuses mapped memory instead of faulting in fresh pages.
  Written w(16 * kMiB);
  BufferPool pool;
  VolumeOptions o = w.options;
  o.buffer_pool = &pool;
  auto v = w.Reopen(o);
  for (uint64_t off = 0; off < 16 * kMiB; off += kMiB) w.ReadChecked(*v, off, kMiB);
  INFO(w.model.DataGets() << " data GETs, largest " << w.model.MaxDataGet());
  REQUIRE(w.model.MaxDataGet() >= BufferPool::kMinBytes);
  CHECK(pool.pooled_bytes() >= BufferPool::kMinBytes);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

TEST_CASE("read-ahead reads a small segment whole, one GET for all its chunks",
          "[volume][readahead]") {
  Written w(64 * kMiB);  // a read-ahead window of 16 MiB (a quarter of the block cache)
  {
    auto v = w.Reopen();
    // One segment of 30 blocks (2 chunks) spread 2 MiB apart: its second chunk is first
    // needed 32 MiB after its first, further than a window reaches.
    std::vector<uint64_t> offsets;
    for (uint64_t k = 0; k < 30; ++k) offsets.push_back(4 * kMiB + 2 * k * kMiB + 12288);
    OverwriteScattered(w, *v, offsets, offsets.size());
    REQUIRE(RunSim(w.env, v->Close()).ok());
  }
  w.model.LearnSizes();
  auto v = w.Reopen();
  for (uint64_t off = 0; off < 64 * kMiB; off += kMiB) w.ReadChecked(*v, off, kMiB);
  std::map<std::string, int> small_gets;  // data GETs of segments under 1 MiB
  for (const auto& g : w.model.gets) {
    if (w.model.IsData(g) && w.model.sizes[g.key] < kMiB) ++small_gets[g.key];
  }
  REQUIRE(small_gets.size() == 1);
  CHECK(small_gets.begin()->second == 1);
  CHECK(v->stats().read_ahead_wasted == 0);
  REQUIRE(RunSim(w.env, v->Close()).ok());
}

// Not a test: the figures behind the chunk size (docs/volume.md "Reads"). The model store
// charges 25 ms and 7 ns per byte (~150 MB/s per connection) per GET; run with
// `portal_tests "[readahead-bench]"`.
TEST_CASE("read costs by chunk size (modelled S3)", "[.][readahead-bench]") {
  for (uint32_t per_chunk : {4u, 16u, 64u, 256u}) {
    Written w(64 * kMiB, Options(per_chunk));
    auto v = w.Reopen();
    uint64_t t0 = w.env.NowNanos();
    for (uint64_t off = 0; off < 64 * kMiB; off += kMiB) w.ReadChecked(*v, off, kMiB);
    const double seq_mib_s = 64.0 * kNanosPerSecond / static_cast<double>(w.env.NowNanos() - t0);
    const size_t seq_gets = w.model.gets.size();
    REQUIRE(RunSim(w.env, v->Close()).ok());
    v = w.Reopen();
    // Footers first, then 64 random 4 KiB reads, one at a time.
    for (uint64_t off = 0; off < 64 * kMiB; off += 4 * kMiB) w.ReadChecked(*v, off, 4096);
    uint64_t total_ns = 0, cold = 0;
    for (int i = 0; i < 64; ++i) {
      const size_t before = w.model.gets.size();
      const uint64_t ns = w.ReadChecked(*v, (w.env.RandomU64() % (16 * 1024)) * 4096, 4096);
      if (w.model.gets.size() > before) total_ns += ns, ++cold;  // cache hits aside
    }
    uint64_t stored = 0;
    for (const auto& [key, size] : w.model.sizes) stored += size;
    WARN("chunk " << per_chunk * 4 << " KiB: sequential 1 MiB reads " << seq_mib_s << " MiB/s in "
                  << seq_gets << " GETs; cold random 4 KiB read "
                  << total_ns / std::max<uint64_t>(1, cold) / 1000 << " us each (" << cold
                  << " of 64 cold); footers " << (stored - 64 * kMiB) / 16
                  << " bytes per 4 MiB segment");
    REQUIRE(RunSim(w.env, v->Close()).ok());
  }
}

}  // namespace
}  // namespace portal::volume
