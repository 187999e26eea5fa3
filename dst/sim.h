// Simulator: one seeded run of the real volume code against a faulty store, a random
// workload, crashes, second writers and the oracle. See dst/README.md.
//
// Structure of a run:
//   1. open the volume (incarnation 1);
//   2. workload: requests from one or more clients (direct BlockDevice calls or the NBD
//      codec), store faults, crashes (random, or armed on a store call), a second
//      writer opening while the first keeps going, periodic store invariants and
//      cache-vs-rebuilt audits;
//   3. liveness: faults off; every request, upload, memtable flush, compaction and GC
//      must finish; every volume must close; the scheduler must go idle;
//   4. a final reopen whose content must match the oracle exactly.
// Every reply and every reopen is checked as it happens; the first violation ends the
// run (exit status 1) with the failing step and the command that reproduces it.
//
// Writers: an incarnation is one Volume over its own FaultStore (a process). A crash
// kills the incarnation at an instant (its later replies are ignored, its store calls
// fail) and the next one opens the same objects. A second writer opens while the first
// still runs; from the moment its Open returns the first is "superseded" and its FLUSH
// and FUA acknowledgements are held to the fencing rule (sim_ops.cc, FenceCheck).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cache/disk_cache.h"
#include "crypto/aead.h"
#include "dst/faults.h"
#include "dst/history.h"
#include "dst/knobs.h"
#include "dst/nbd_client.h"
#include "dst/oracle.h"
#include "dst/store_check.h"
#include "env/sim_env.h"
#include "objstore/fault_store.h"
#include "objstore/memory_store.h"
#include "testing/memory_cache_files.h"
#include "volume/volume.h"

namespace portal::dst {

enum class OpType : uint8_t {
  kRead, kWrite, kTrim, kZero, kFlush, kStatus, kCache, kFlushMemtable, kCompact, kGc,
  kSnapCreate, kSnapDelete, kSnapRestore, kSnapRead
};
const char* OpName(OpType t);

struct Writer;

struct Op {
  uint64_t id = 0;
  OpType type = OpType::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool fua = false;
  bool no_hole = false;
  uint64_t seed = 0;  // WRITE pattern (0: zeroes)
  uint32_t max_extents = 0;
  bool via_nbd = false;
  bool verify = false;  // a verification read (resolution / audit), not workload
  Writer* w = nullptr;
  uint64_t t_issue = 0;
  bool done = false;
  std::vector<uint8_t> buf;  // WRITE payload or READ result
  std::vector<device::ByteRange> zeroes;
  std::vector<device::StatusExtent> extents;
  std::string snap;                               // SNAP_*: the snapshot's name
  std::shared_ptr<device::BlockDevice> snap_dev;  // SNAP_READ: the device, while reading
  bool Mutates() const {
    return type == OpType::kWrite || type == OpType::kTrim || type == OpType::kZero;
  }
  // On the writer's device (a SNAP_READ reads another one).
  bool Ranged() const { return Mutates() || type == OpType::kRead || type == OpType::kStatus; }
  bool SnapAdmin() const {
    return type == OpType::kSnapCreate || type == OpType::kSnapDelete ||
           type == OpType::kSnapRestore;
  }
  // Runs alone on its writer: nothing else in flight, nothing issued until it is done.
  bool Exclusive() const { return type == OpType::kSnapCreate || type == OpType::kSnapRestore; }
};

// The oracle of one snapshot (dst/README.md "Snapshots"). Its timeline is the writer's,
// copied when the create was issued (nothing else in flight: creates run alone), with
// every acknowledged write claimed durable; the first verification pins it.
struct SnapOracle {
  std::unique_ptr<Timeline> tl;
  bool must_exist = false;  // an acknowledged create, no delete issued since
  bool may_exist = true;    // false once a delete was acknowledged or a listing lacked it
  int readers = 0;          // SNAP_READs in flight
  bool busy = false;        // a create or delete of it in flight
  std::string clone;        // a clone made from it (sim_clone.cc): it can never go
};

struct Writer {
  int id = 0;
  std::unique_ptr<objstore::FaultStore> store;
  std::shared_ptr<volume::Volume> vol;
  std::unique_ptr<NbdClient> nbd;
  Timeline* tl = nullptr;
  uint64_t epoch = 0;
  bool opening = false;
  std::optional<Status> open_status;  // set when Open finished
  bool dead = false;                  // crashed: replies ignored from that instant
  std::string death;
  bool crash_handled = false;
  bool superseded = false;            // a newer writer's Open returned
  uint64_t fork_t = 0;                // ... at this logical time
  uint64_t post_fork_ops = 0;
  uint64_t first_post_fork_ack = kNever;  // earliest ack of a write issued after fork_t
  std::set<uint64_t> successor_absent;    // its acked writes the successor does not have
  bool successor_resolved = false;
  bool contested = false;             // another writer started opening after us
  bool damaged = false;               // opened over a damaged store (sim_damage.cc)
  bool closing = false;
  bool closed = false;
  uint64_t inflight = 0;
  std::vector<Op*> ops;               // in flight
  std::unique_ptr<Op> pending_exclusive;  // waits for the writer's requests to drain
  bool exclusive = false;             // an exclusive op is in flight
  bool snap_admin = false;            // a snapshot create/delete/restore is in flight
  // A restore was issued and its outcome is not known: the next writer may find the
  // device restored (this content) or not.
  std::unique_ptr<Timeline> restore_alt;
  std::string restore_name;
  int restore_resolved = -1;          // successor's resolution: 1 restored, 0 not
};

class Simulator {
 public:
  explicit Simulator(const Knobs& knobs);
  // Debugging aid: log every request touching this block to stderr.
  void set_trace_block(uint64_t block) { trace_block_ = block; }
  ~Simulator();
  // Runs to the end or the first violation. Prints the report; returns the exit status.
  int Run();
  uint64_t fingerprint() const { return history_.fingerprint(); }

 private:
  // --- sim.cc: the main loop and lifecycle events ---
  void Fail(const std::string& what);
  bool failed() const { return !failure_.empty(); }
  void Note(std::string line);
  uint64_t Tick() { return ++clock_; }
  Writer* StartOpen();
  void ProcessEvents();
  void OnOpened(Writer* w);
  void CrashWriter(Writer* w, const std::string& why);
  void StartClose(Writer* w);
  Writer* primary() { return primary_; }
  bool Healthy(const Writer* w) const;
  void Step(uint64_t n);
  void WaitFor(const std::function<bool()>& done, const char* what, uint64_t max_ns);

  // --- sim_ops.cc: the workload ---
  void IssueRandomOp();
  bool PickOp(Writer* w, Op* op);
  bool Conflicts(const Op& op) const;
  void Issue(Op* op);
  void IssueDirect(Op* op);
  void IssueNbd(Op* op);
  void OnDone(Op* op, const Status& st);
  void CheckMutationReply(Op* op, const Status& st, uint64_t t);
  void CheckFlushReply(Op* op, const Status& st);
  void CheckReadReply(Op* op, const Status& st);
  void CheckStatusReply(Op* op, const Status& st);
  void FenceCheck(Writer* w, const std::vector<uint64_t>& claimed, const std::string& what);
  bool Tolerated(const Writer* w, const Status& st, bool is_read) const;
  uint64_t PickOffset();

  // --- sim_verify.cc: resolution, audits, invariants, liveness ---
  // `alt`: a restore of uncertain outcome; the device may hold either timeline.
  void Resolve(Writer* w, Writer* predecessor, std::unique_ptr<Timeline> alt = nullptr);
  // `error` set: a read that fails for good (not Unavailable) returns false with its
  // status there instead of failing the run (reads of a damaged store).
  bool ReadBlocks(Writer* w, uint64_t first, uint64_t count, std::vector<uint8_t>* out,
                  device::BlockDevice* dev = nullptr, Status* error = nullptr);
  // --- sim_clone.cc: clones of snapshots, and volume deletes at the end ---
  template <typename T>
  std::optional<T> AwaitTask(Task<T> task, const char* what);
  volume::VolumeResolver CloneResolver();
  std::shared_ptr<volume::Volume> OpenClone(const std::string& name);
  void MaybeClone(Writer* w);
  void VerifyClones(Writer* w);  // every clone reads its snapshot's oracle
  void DeleteVolumesAtEnd();

  // --- sim_snap.cc: snapshots ---
  bool PickSnapOp(Writer* w, Op* op, bool admin);
  void IssueSnap(Op* op);
  void CheckSnapReply(Op* op, const Status& st);
  // After an open: the listing must agree with the oracle, and every snapshot's content.
  // `settle` false: check only, change no snapshot's oracle (a damaged store's listing).
  void CheckSnapshotList(Writer* w, bool settle = true);
  // `damaged`: a damaged store; open and read errors are allowed, nothing is pinned.
  void VerifySnapshots(Writer* w, bool damaged = false);
  std::unique_ptr<Timeline> TakeRestoreAlt(Writer* w, Writer** from);
  // --- sim_damage.cc: one object damaged between incarnations ---
  // Before an open with no writer alive: maybe damage one object (delete, truncate, flip).
  void MaybeDamage();
  // The open of a damaged store succeeded: every block reads legal (crash mode) or fails;
  // nothing is pinned. Then the incarnation is killed and the object restored.
  void VerifyDamaged(Writer* w);
  // Puts the pristine object back (unless the store moved on: then says why, or fails).
  void RepairDamage();
  // Reads [first, first + count) of a damaged store, block by block where a run fails:
  // (block, content) for every block that read; counts the others.
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> ReadDamaged(
      Writer* w, const std::vector<uint64_t>& blocks, device::BlockDevice* dev);
  void Audit();
  void CheckInvariants(const char* when);
  void Liveness();
  void FinalCheck();
  void RecordOpen(Writer* w);

  Knobs k_;
  // k_.encrypt: the volumes' keys (k_.volume.keyring points here); outlives every volume.
  std::shared_ptr<const crypto::Keyring> keyring_;
  Prng key_rng_;  // the keyring's salts
  SimEnv env_;
  Prng rng_;
  objstore::MemoryStore mem_;
  FaultPlan plan_;
  // The disk cache (knob disk_cache_bytes): one local disk for every incarnation (a
  // machine's across restarts and second writers), damaging reads, filling up, read-only;
  // each incarnation's DiskCache over it, kept to the end (zombies still read).
  std::shared_ptr<testing::MemoryCacheFiles::Disk> cache_disk_;
  Prng cache_rng_;
  uint64_t cache_damages_ = 0;
  std::vector<std::unique_ptr<cache::DiskCache>> disk_caches_;
  History history_;
  StoreFacts facts_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::vector<std::unique_ptr<Timeline>> timelines_;
  std::vector<std::unique_ptr<Op>> ops_;  // every op ever issued (buffers outlive tasks)
  Writer* primary_ = nullptr;
  Writer* opening_ = nullptr;
  uint64_t clock_ = 0;
  uint64_t issued_ = 0;
  uint64_t next_op_id_ = 1;
  uint64_t next_mutation_seed_ = 1;
  uint64_t open_failures_ = 0;
  uint64_t crashes_ = 0;
  uint64_t second_writers_ = 0;
  uint64_t tolerated_errors_ = 0;
  uint64_t audits_ = 0;
  uint64_t checks_ = 0;
  uint64_t last_audit_ = 0;
  uint64_t last_check_ = 0;
  std::vector<uint64_t> hot_;  // hot region starts (huge devices)
  std::map<std::string, SnapOracle> snaps_;  // by name (names are never reused)
  uint64_t next_snap_ = 1;
  bool last_resolve_restored_ = false;  // the last Resolve found an uncertain restore landed
  uint64_t snap_ops_ = 0, snap_reads_ = 0, snap_verified_ = 0, restores_ = 0;
  // Clones (sim_clone.cc), each in its own store; their own random numbers, so the rest
  // of a run draws what it drew before clones existed.
  struct CloneState {
    std::unique_ptr<objstore::MemoryStore> store;
    std::string snap;
    std::unique_ptr<Timeline> tl;  // the snapshot's oracle when cloned
  };
  std::map<std::string, CloneState> clones_;
  Prng clone_rng_;
  uint64_t clones_verified_ = 0;
  uint64_t trace_block_ = UINT64_MAX;
  bool Traced(const Op& op) const;
  struct DamageState {
    bool active = false;
    std::string key;
    std::string pristine;                // the object before
    std::optional<std::string> damaged;  // after (nullopt: deleted)
    std::string what;                    // "deleted seg/... (in the replay log)"
    bool replay_gap = false;             // a deleted segment open must refuse (step 7)
    bool late_put_back = false;          // a late PUT of it landed after the damage
  };
  DamageState damage_;
  Prng damage_rng_;
  uint64_t damages_ = 0, damage_refused_ = 0, damage_opened_ = 0, damage_errors_ = 0;
  // Late segment PUTs (dst/late_store.h): landed while their writer ran, landed after it
  // crashed or was superseded, found their id taken.
  uint64_t late_landed_ = 0, late_after_writer_ = 0, late_taken_ = 0;
  std::string failure_;
  std::string phase_ = "setup";
  // Fencing claims by superseded writers made before their successor was verified.
  std::vector<std::pair<Writer*, std::vector<uint64_t>>> deferred_claims_;
};

}  // namespace portal::dst
