#include "dst/knobs.h"

#include <fmt/format.h>

#include "env/sim_env.h"

namespace portal::dst {
namespace {

template <typename T, size_t N>
T Pick(Prng& r, const T (&choices)[N]) {
  return choices[r.Below(N)];
}

uint64_t Range(Prng& r, uint64_t lo, uint64_t hi) { return lo + r.Below(hi - lo + 1); }

}  // namespace

Knobs Knobs::Draw(uint64_t seed, uint64_t ops, bool swarm) {
  // The knob stream is separate from the scheduler's and the workload's streams, so
  // adding a knob at the end changes no earlier one.
  Prng r(seed ^ 0x6b6e6f6273ULL);
  Knobs k;
  k.seed = seed;
  k.ops = ops;
  k.swarm = swarm;
  k.shuffle_ready = r.Below(8) != 0;

  volume::VolumeOptions& v = k.volume;
  v.block_size = Pick(r, {512u, 1024u, 4096u, 4096u});
  const bool huge = r.Below(6) == 0;
  v.size_bytes = huge ? (uint64_t{1} << Range(r, 40, 60))
                      : uint64_t{v.block_size} * Range(r, 64, 2048);
  v.flush_interval_ms = Pick(r, {0ull, 1ull, 50ull, 1000ull});
  v.l0_sst_size_bytes = uint64_t{v.block_size} * Range(r, 4, 64);
  v.max_unflushed_bytes = v.l0_sst_size_bytes * Range(r, 2, 8);
  v.block_cache_size_bytes = Pick(r, {16ull << 10, 256ull << 10, 4ull << 20});
  v.blocks_per_chunk = Pick(r, {1u, 2u, 4u, 16u});
  v.compress = r.Below(2) == 0;
  v.read_partial_raw_chunks = r.Below(3) == 0;
  v.memtable_flush_segments = Range(r, 1, 8);
  v.memtable_flush_interval_ms = Pick(r, {100ull, 5000ull, 60000ull});
  v.memtable_max_extents = Pick(r, {16ull, 256ull, 1ull << 20});
  v.l0_compaction_trigger = Range(r, 2, 4);
  v.sst_target_bytes = Pick(r, {512ull, 2048ull, 65536ull});
  v.level1_target_bytes = Pick(r, {1024ull, 8192ull, 1ull << 20});
  v.gc_grace_ms = Pick(r, {1000ull, 10000ull, 60000ull, 600000ull});
  v.gc_interval_ms = Pick(r, {100ull, 1000ull, 10000ull});
  v.gc_live_ratio = Pick(r, {0.0, 0.3, 0.5, 0.9});
  v.manifests_kept = Pick(r, {1ull, 2ull, 8ull});
  v.cache_dir = "";

  FaultKnobs& f = k.faults;
  f.error_ppm = uint32_t(Pick(r, {0, 5000, 20000, 60000, 150000}));
  f.lost_ack_ppm = uint32_t(Pick(r, {0, 5000, 20000, 60000}));
  f.latency_ppm = uint32_t(Pick(r, {0, 100000, 500000, 1000000}));
  f.latency_max_ns = Pick(r, {100'000ull, 5'000'000ull, 50'000'000ull});
  f.straggler_ppm = uint32_t(Pick(r, {0, 2000, 20000}));
  f.straggler_max_ns = Pick(r, {500'000'000ull, 3'000'000'000ull});
  if (r.Below(4) == 0) {
    f.burst_period_ms = Pick(r, {2000ull, 30000ull});
    f.burst_len_ms = f.burst_period_ms / Range(r, 3, 10);
    f.burst_error_ppm = uint32_t(Pick(r, {500000, 900000}));
  }
  f.trigger_permille = uint32_t(Pick(r, {0, 200, 500, 800}));

  WorkloadKnobs& w = k.work;
  w.max_inflight = uint32_t(Pick(r, {1, 2, 4, 8, 16}));
  w.max_write_blocks = uint32_t(Pick(r, {1, 4, 16, 64}));
  w.w_read = uint32_t(Range(r, 10, 40));
  w.w_write = uint32_t(Range(r, 10, 40));
  w.w_unaligned = uint32_t(Range(r, 0, 20));
  w.w_trim = uint32_t(Range(r, 0, 8));
  w.w_zero = uint32_t(Range(r, 0, 8));
  w.w_huge_zero = uint32_t(Range(r, 0, 2));
  w.w_flush = uint32_t(Range(r, 1, 12));
  w.w_status = uint32_t(Range(r, 0, 8));
  w.w_cache = uint32_t(Range(r, 0, 3));
  w.w_admin = uint32_t(Range(r, 0, 3));
  w.w_sleep = uint32_t(Range(r, 0, 4));
  w.fua_permille = uint32_t(Pick(r, {0, 50, 200}));
  w.nbd_permille = uint32_t(Pick(r, {0, 250, 1000}));
  w.crash_per_kop = uint32_t(Pick(r, {0, 1, 3, 8}));
  w.second_writer_per_kop = uint32_t(Pick(r, {0, 1, 2}));
  w.old_writer_ops = uint32_t(Range(r, 5, 60));
  w.audit_every = uint32_t(Pick(r, {700, 1500, 3000}));
  w.check_every = uint32_t(Pick(r, {200, 500}));
  w.hot_regions = huge ? uint32_t(Range(r, 1, 6)) : 0;
  w.steps_per_op = uint32_t(Pick(r, {2, 8, 32}));

  if (swarm) {
    // Each feature independently off with probability 1/2 (the swarm draws come last).
    auto off = [&] { return r.Below(2) == 0; };
    if (off()) w.w_unaligned = 0;
    if (off()) w.w_trim = 0;
    if (off()) w.w_zero = 0;
    if (off()) w.w_huge_zero = 0;
    if (off()) w.w_status = 0;
    if (off()) w.w_cache = 0;
    if (off()) w.w_admin = 0;
    if (off()) w.w_sleep = 0;
    if (off()) w.fua_permille = 0;
    if (off()) w.nbd_permille = 0;
    if (off()) w.crash_per_kop = 0;
    if (off()) w.second_writer_per_kop = 0;
    if (off()) f.error_ppm = 0;
    if (off()) f.lost_ack_ppm = 0;
    if (off()) f.latency_ppm = f.straggler_ppm = 0;
    if (off()) f.burst_period_ms = 0;
    if (off()) f.trigger_permille = 0;
  }
  // Appended after the swarm switches: adding them changed no earlier knob.
  w.w_snap = uint32_t(Range(r, 0, 3));
  w.w_snap_read = uint32_t(Range(r, 0, 6));
  w.snap_trigger_permille = uint32_t(Pick(r, {0, 100, 300}));
  if (swarm) {
    if (r.Below(2) == 0) w.w_snap = 0;
    if (r.Below(2) == 0) w.w_snap_read = 0;
    if (r.Below(2) == 0) w.snap_trigger_permille = 0;
  }
  // Full compactions (appended last, as above): from a few segments of shadowed
  // references up to never.
  v.full_compaction_min_bytes =
      Pick(r, {v.l0_sst_size_bytes, 4 * v.l0_sst_size_bytes, uint64_t{1} << 40});
  v.full_compaction_ratio = Pick(r, {0.05, 0.25, 1.0});
  // Damage between incarnations (appended last, as above): off in half the seeds.
  f.damage_permille = uint32_t(Pick(r, {0, 0, 200, 500}));
  if (swarm && r.Below(2) == 0) f.damage_permille = 0;
  // Damaged GET bodies and the disk cache (appended last, as above). A read fails (a
  // violation here) only after kVerifiedReadAttempts damaged bodies in a row: at 2%
  // that was a few in 10^5 reads, often enough to end a run (regression seed
  // 310158700459); at 0.3% it is about 3 in 10^8.
  f.get_damage_ppm = uint32_t(Pick(r, {0, 300, 1000, 3000}));
  f.disk_cache_bytes = Pick(r, {0ull, 16ull << 10, 256ull << 10, 16ull << 20});
  f.cache_damage_ppm = uint32_t(Pick(r, {0, 5000, 50000}));
  f.cache_disk_bytes = Pick(r, {0ull, 0ull, 0ull, 1ull << 20});
  f.cache_read_only = r.Below(10) == 0;
  if (swarm && r.Below(2) == 0) f.get_damage_ppm = 0;
  if (swarm && r.Below(2) == 0) f.disk_cache_bytes = 0;
  if (v.read_partial_raw_chunks) f.get_damage_ppm = f.disk_cache_bytes = 0;
  // Uploads in flight (appended last, as above): a window above 1 in most seeds, and
  // segment PUTs that land late (after a retry, a crash, the next writer's open).
  v.upload_window = uint32_t(Pick(r, {1u, 2u, 4u, 8u, 8u, 16u}));
  f.late_ppm = uint32_t(Pick(r, {0, 5000, 30000, 100000}));
  f.late_max_ns = Pick(r, {200'000'000ull, 5'000'000'000ull, 60'000'000'000ull});
  if (swarm && r.Below(2) == 0) f.late_ppm = 0;
  // Encryption at rest (appended last, as above): on in half the seeds.
  k.encrypt = r.Below(2) == 0;
  return k;
}

std::string Knobs::Describe() const {
  const volume::VolumeOptions& v = volume;
  const FaultKnobs& f = faults;
  const WorkloadKnobs& w = work;
  return fmt::format(
      "seed={} ops={} swarm={} shuffle_ready={} | block_size={} size_bytes={} "
      "flush_interval_ms={} l0_sst_size_bytes={} max_unflushed_bytes={} "
      "block_cache_size_bytes={} blocks_per_chunk={} compress={} read_partial_raw_chunks={} "
      "memtable_flush_segments={} memtable_flush_interval_ms={} memtable_max_extents={} "
      "l0_compaction_trigger={} sst_target_bytes={} level1_target_bytes={} gc_grace_ms={} "
      "gc_interval_ms={} gc_live_ratio={} manifests_kept={} | error_ppm={} lost_ack_ppm={} "
      "latency_ppm={} latency_max_ns={} straggler_ppm={} straggler_max_ns={} "
      "burst_period_ms={} burst_len_ms={} burst_error_ppm={} trigger_permille={} | "
      "max_inflight={} max_write_blocks={} w_read={} w_write={} w_unaligned={} w_trim={} "
      "w_zero={} w_huge_zero={} w_flush={} w_status={} w_cache={} w_admin={} w_sleep={} "
      "fua_permille={} nbd_permille={} crash_per_kop={} second_writer_per_kop={} "
      "old_writer_ops={} audit_every={} check_every={} hot_regions={} steps_per_op={} w_snap={} "
      "w_snap_read={} snap_trigger_permille={} full_compaction_min_bytes={} "
      "full_compaction_ratio={} damage_permille={} get_damage_ppm={} disk_cache_bytes={} "
      "cache_damage_ppm={} cache_disk_bytes={} cache_read_only={} upload_window={} late_ppm={} "
      "late_max_ns={} encrypt={}",
      seed, ops, swarm ? 1 : 0, shuffle_ready ? 1 : 0, v.block_size, v.size_bytes,
      v.flush_interval_ms, v.l0_sst_size_bytes, v.max_unflushed_bytes, v.block_cache_size_bytes,
      v.blocks_per_chunk, v.compress ? 1 : 0, v.read_partial_raw_chunks ? 1 : 0,
      v.memtable_flush_segments, v.memtable_flush_interval_ms, v.memtable_max_extents,
      v.l0_compaction_trigger, v.sst_target_bytes, v.level1_target_bytes, v.gc_grace_ms,
      v.gc_interval_ms, v.gc_live_ratio, v.manifests_kept, f.error_ppm, f.lost_ack_ppm,
      f.latency_ppm, f.latency_max_ns, f.straggler_ppm, f.straggler_max_ns, f.burst_period_ms,
      f.burst_len_ms, f.burst_error_ppm, f.trigger_permille, w.max_inflight, w.max_write_blocks,
      w.w_read, w.w_write, w.w_unaligned, w.w_trim, w.w_zero, w.w_huge_zero, w.w_flush,
      w.w_status, w.w_cache, w.w_admin, w.w_sleep, w.fua_permille, w.nbd_permille,
      w.crash_per_kop, w.second_writer_per_kop, w.old_writer_ops, w.audit_every, w.check_every,
      w.hot_regions, w.steps_per_op, w.w_snap, w.w_snap_read, w.snap_trigger_permille,
      v.full_compaction_min_bytes, v.full_compaction_ratio, f.damage_permille, f.get_damage_ppm,
      f.disk_cache_bytes, f.cache_damage_ppm, f.cache_disk_bytes, f.cache_read_only ? 1 : 0,
      v.upload_window, f.late_ppm, f.late_max_ns, encrypt ? 1 : 0);
}

std::string Knobs::Command() const {
  return fmt::format("portalbd-dst --seed {} --ops {}{}", seed, ops, swarm ? " --swarm" : "");
}

}  // namespace portal::dst
