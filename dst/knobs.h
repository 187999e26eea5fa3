// Knobs: everything one simulator run varies, drawn from its seed with portal::Prng.
// The first line of every run prints them all (Describe), so a failure report says
// exactly which configuration broke.
//
// --swarm (swarm testing, Groce et al. 2012) additionally switches whole features off
// per seed (op kinds, fault classes, crashes, the second writer, the NBD path), so that
// one feature cannot mask the bugs another would expose.
#pragma once

#include <cstdint>
#include <string>

#include "volume/options.h"

namespace portal::dst {

struct FaultKnobs {
  uint32_t error_ppm = 0;      // kFail: injected 5xx / SlowDown / timeout
  uint32_t lost_ack_ppm = 0;   // kLoseAck on Put/PutIfAbsent/Delete
  uint32_t latency_ppm = 0;    // small latency (reorders concurrent requests)
  uint64_t latency_max_ns = 0;
  uint32_t straggler_ppm = 0;  // rare long latency
  uint64_t straggler_max_ns = 0;
  uint64_t burst_period_ms = 0;  // 0: no bursts; else error bursts of burst_len_ms
  uint64_t burst_len_ms = 0;
  uint32_t burst_error_ppm = 0;
  uint32_t trigger_permille = 0;  // chance an incarnation arms a store-call crash trigger
  // Damage between incarnations (drawn last, dst/README.md "Damage"): the chance that,
  // once every writer has crashed or closed, one object is deleted, truncated or
  // bit-flipped before the next open.
  uint32_t damage_permille = 0;
  // GET bodies damaged on the way (drawn last): one bit flipped, torn (zeros from some
  // byte on) or short. 0 with read_partial_raw_chunks: raw block reads carry no checksum
  // (memory:// only, a documented limit).
  uint32_t get_damage_ppm = 0;
  // The disk cache (drawn last): its capacity (0: none), reads of its files damaged the
  // same three ways, the disk's size (it fills up; 0: unbounded) and read-only.
  uint64_t disk_cache_bytes = 0;
  uint32_t cache_damage_ppm = 0;
  uint64_t cache_disk_bytes = 0;
  bool cache_read_only = false;
  // Segment PUTs that land late (dst/late_store.h): the caller hears a timeout, the
  // object appears up to late_max_ns later, whatever became of its writer.
  uint32_t late_ppm = 0;
  uint64_t late_max_ns = 0;
};

struct WorkloadKnobs {
  uint32_t max_inflight = 4;
  uint32_t max_write_blocks = 8;
  // Relative weights of the request kinds.
  uint32_t w_read = 0, w_write = 0, w_unaligned = 0, w_trim = 0, w_zero = 0, w_huge_zero = 0,
           w_flush = 0, w_status = 0, w_cache = 0, w_admin = 0, w_sleep = 0;
  uint32_t fua_permille = 0;
  uint32_t nbd_permille = 0;      // requests sent through the NBD codec
  uint32_t crash_per_kop = 0;     // random crashes per 1000 requests
  uint32_t second_writer_per_kop = 0;
  uint32_t old_writer_ops = 0;    // requests the fenced writer keeps issuing
  uint32_t audit_every = 0;       // requests between cache-vs-rebuilt audits
  uint32_t check_every = 0;       // requests between store invariant checks
  uint32_t hot_regions = 0;       // huge devices: requests go to a few regions
  uint32_t steps_per_op = 0;      // scheduler steps between requests (upper bound)
  // Snapshots (drawn after the swarm switches, so older knobs keep their values).
  uint32_t w_snap = 0;            // SNAP_CREATE / SNAP_DELETE / SNAP_RESTORE
  uint32_t w_snap_read = 0;       // READ through a snapshot device
  uint32_t snap_trigger_permille = 0;  // a create/restore arms a crash on its own writes
};

struct Knobs {
  uint64_t seed = 0;
  uint64_t ops = 0;
  bool swarm = false;
  bool shuffle_ready = true;
  volume::VolumeOptions volume;
  FaultKnobs faults;
  WorkloadKnobs work;
  // Encryption at rest (VolumeOptions::keyring, set by the Simulator from a key and salts
  // drawn from the seed, so a seed still replays exactly).
  bool encrypt = false;

  static Knobs Draw(uint64_t seed, uint64_t ops, bool swarm);
  // One line: "seed=... ops=... block_size=... ...".
  std::string Describe() const;
  // The command that reproduces this run.
  std::string Command() const;
};

constexpr uint64_t kDefaultOps = 6000;

}  // namespace portal::dst
