// The oracle: what a block device may show, per block, under DESIGN.md's durability
// contract, given the history of requests issued and answered.
//
// A Timeline is one writer lineage's view of the device. Per block it keeps a `base`
// (content every legal state starts from) and the mutations issued since, in issue
// order. A mutation is in flight, acknowledged or failed; acknowledged ones may also be
// claimed durable (covered by a FLUSH that succeeded, or a FUA write's own reply).
//
// Legal contents of a block are apply(S) for a set S of its pending mutations where
//   - S holds every *required* mutation: in Live mode every acknowledged one (a WRITE
//     reply means later reads see it); in Crash mode every one claimed durable;
//   - S is closed under "acknowledged before issued": if Y is in S and an acknowledged
//     X finished before Y was issued, X is in S (buffers seal and segments replay in
//     order, so a later write cannot survive an earlier acknowledged one);
//   - failed and in-flight mutations are optional (a failed multi-block write may have
//     installed some blocks; an in-flight one may or may not have reached the store).
// The workload never has two overlapping mutations (or a read and a mutation) in flight
// at once on a timeline, so overlapping mutations are ordered by issue time and apply(S)
// is well defined byte by byte. Concurrent writes to disjoint bytes of one block are
// allowed and exercise the volume's read-modify-write.
//
// Blocks absent from the map are zero in every legal state; zeroing mutations only touch
// blocks present in the map (so WRITE_ZEROES of an exabyte costs what the map holds).
//
// Not thread-safe (the simulator is single-threaded).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace portal::dst {

constexpr uint64_t kNever = UINT64_MAX;

// The content a mutation writes at device byte `offset` (seed 0: zeroes). Deterministic,
// cheap, different for every seed.
void FillPattern(uint64_t seed, uint64_t offset, uint8_t* out, size_t len);

struct Mutation {
  enum class State : uint8_t { kInflight, kAcked, kFailed };
  uint64_t id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t seed = 0;  // 0: zeroes (TRIM, WRITE_ZEROES, a WRITE of zero bytes)
  bool fua = false;
  uint64_t t_issue = 0;
  uint64_t t_done = kNever;
  State state = State::kInflight;
  bool durable = false;  // claimed durable by an acknowledgement
  uint32_t refs = 0;     // block pending lists holding it
};

class Timeline {
 public:
  enum class Mode { kLive, kCrash };

  Timeline(uint32_t block_size, uint64_t size_bytes);

  uint32_t block_size() const { return bs_; }
  uint64_t size_bytes() const { return size_; }

  void Issue(const Mutation& m);
  // A reply arrived. ok: acknowledged (a FUA one becomes durable); else failed.
  void Complete(uint64_t id, bool ok, uint64_t t_done);
  // A FLUSH issued at `t_flush_issue` succeeded: every mutation acknowledged before it is
  // durable. Returns the ids newly claimed (for the fencing rule).
  std::vector<uint64_t> FlushSucceeded(uint64_t t_flush_issue);
  // Ids of acknowledged, not yet durable mutations finished before `t`.
  std::vector<uint64_t> AckedBefore(uint64_t t) const;
  const Mutation* Find(uint64_t id) const;

  // Checks that `observed` (device bytes from `offset`) is legal in Live mode. Returns ""
  // or a description of the first bad block. A block with too many optional mutations to
  // enumerate (a fenced writer's failed writes pile up: nothing settles them) and no
  // match within the bound counts as inconclusive, not as a violation.
  uint64_t inconclusive() const { return inconclusive_; }
  std::string CheckLive(uint64_t offset, std::span<const uint8_t> observed) const;
  // Checks that [offset, offset + len) may read as zeroes (a BLOCK_STATUS zero claim).
  std::string CheckZeroClaim(uint64_t offset, uint64_t len) const;

  // Crash resolution of one whole block: `observed` must be legal in Crash mode. On
  // success the block's base becomes `observed` and its pending list is cleared.
  // `present`/`absent` receive the pending mutations every / no matching state holds.
  std::string Resolve(uint64_t block, std::span<const uint8_t> observed,
                      std::set<uint64_t>* present, std::set<uint64_t>* absent);
  // Audit of one whole block on a live writer (nothing in flight on it): a failed
  // mutation that every matching state includes becomes an acknowledged one for this
  // block; one that none includes is dropped from this block.
  std::string Audit(uint64_t block, std::span<const uint8_t> observed);

  // Blocks the map holds (the ones worth verifying), ascending.
  std::vector<uint64_t> Blocks() const;
  size_t block_count() const { return blocks_.size(); }
  size_t pending_mutations() const { return muts_.size(); }
  // The content every legal Live state agrees on is not unique in general; this is the
  // state with every acknowledged mutation and no failed or in-flight one.
  void AckedContent(uint64_t block, uint8_t* out) const;

 private:
  struct Block {
    std::vector<uint8_t> base;  // empty: zeroes
    std::vector<uint64_t> pending;
  };
  struct Leaf {
    std::vector<uint8_t> content;
    std::vector<uint64_t> included;
  };

  bool Required(const Mutation& m, Mode mode) const;
  void ApplyTo(const Mutation& m, uint64_t block, uint8_t* content) const;
  // Enumerates legal contents of `block` (only mutations touching bytes [lo, hi) of the
  // block matter); calls fn for each until it returns false. Returns false if the
  // enumeration hit its bound.
  template <typename Fn>
  bool Enumerate(uint64_t block, Mode mode, uint32_t lo, uint32_t hi, Fn&& fn) const;
  // The legal whole-block contents equal to `observed`: the mutation ids every one of
  // them includes (`inter`) and that any of them includes (`uni`). Returns whether one
  // matched; `complete` (if set) says whether the enumeration ran to its end.
  bool Matching(uint64_t block, Mode mode, std::span<const uint8_t> observed,
                std::set<uint64_t>* inter, std::set<uint64_t>* uni,
                bool* complete = nullptr) const;
  std::string Describe(uint64_t block, Mode mode, uint32_t lo, uint32_t hi,
                       std::span<const uint8_t> observed) const;
  // Drops pending mutations whose bytes a later required one covers, then folds the
  // leading durable ones into the base.
  void Compact(uint64_t block);
  void Unref(uint64_t id);

  uint32_t bs_;
  uint64_t size_;
  std::map<uint64_t, Block> blocks_;
  std::map<uint64_t, Mutation> muts_;
  std::set<uint64_t> acked_undurable_;
  uint64_t next_synthetic_id_ = uint64_t{1} << 62;
  mutable uint64_t inconclusive_ = 0;  // per-block parts of failed mutations
};

}  // namespace portal::dst
