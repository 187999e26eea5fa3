// Segment encoding, from a sealed write buffer to the bytes a store takes: the rope a
// memory store keeps, one string for file:// and s3:// (raw and LZ4). Run:
//   build/portal_microbench --benchmark_filter=Segment
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "util/buffer_pool.h"
#include "volume/segment_format.h"
#include "volume/write_buffer.h"

namespace portal::volume {
namespace {

constexpr uint32_t kBlockSize = 4096;

// 32 MiB of writes: half as 4 KiB copies at scattered blocks, half as 256 KiB writes the
// buffer adopts; a third of the blocks compress.
std::unique_ptr<WriteBuffer> Buffer() {
  auto buf = std::make_unique<WriteBuffer>(kBlockSize, 16);
  uint64_t x = 7, seq = 1;
  auto fill = [&](std::string* s) {
    for (size_t i = 0; i < s->size(); i += 8) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const uint64_t v = (i / kBlockSize) % 3 == 0 ? 0x6161616161616161ULL : x;
      s->replace(i, 8, reinterpret_cast<const char*>(&v), 8);
    }
  };
  std::string small(kBlockSize, '\0');
  for (uint64_t i = 0; i < 4096; ++i) {
    fill(&small);
    buf->WriteBlocks((i * 7919) % 100'000, reinterpret_cast<const uint8_t*>(small.data()), 1,
                     seq++);
  }
  for (uint64_t i = 0; i < 64; ++i) {
    auto big = std::make_shared<std::string>(64 * kBlockSize, '\0');
    fill(big.get());
    buf->WriteBlocks(200'000 + i * 100, reinterpret_cast<const uint8_t*>(big->data()), 64, seq++,
                     big);
  }
  return buf;
}

SegmentFooter Footer() {
  SegmentFooter f;
  f.segment_id = 5;
  f.epoch = 1;
  f.block_size = kBlockSize;
  f.blocks_per_chunk = 16;
  f.durable_through = 4;
  return f;
}

void BM_SegmentRope(benchmark::State& state) {
  auto buf = Buffer();
  BufferPool pool;
  for (auto _ : state) {
    SegmentFooter f = Footer();
    EncodedSegment enc = EncodeSegment(&f, buf->Contents(&f), {false, &pool});
    benchmark::DoNotOptimize(enc.bytes.size());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(buf->bytes()));
}
BENCHMARK(BM_SegmentRope)->Unit(benchmark::kMillisecond);

// As file:// takes it: one string from the pool, given back once written (s3:// sends a
// compressed segment's pieces as they are; with incompressible data Flatten is the copy).
void StringSegment(benchmark::State& state, bool compress) {
  auto buf = Buffer();
  BufferPool pool;
  for (auto _ : state) {
    SegmentFooter f = Footer();
    EncodedSegment enc = EncodeSegment(&f, buf->Contents(&f), {compress, &pool});
    std::string bytes = std::move(enc.bytes).Flatten(&pool);
    benchmark::DoNotOptimize(bytes.data());
    pool.Give(std::move(bytes));
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(buf->bytes()));
}
void BM_SegmentString(benchmark::State& state) { StringSegment(state, false); }
void BM_SegmentLz4(benchmark::State& state) { StringSegment(state, true); }
BENCHMARK(BM_SegmentString)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SegmentLz4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace portal::volume
