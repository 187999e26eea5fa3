// The workload: picking requests, sending them (directly to the BlockDevice or through
// the NBD codec), and judging every reply against the oracle.
//
// Fencing rule (DESIGN.md "Single writer", docs/volume.md "Single writer"), exact form:
// once writer B's Open has returned, writer A (superseded) can land no more segments:
// B's fence holds the first id A could use next. So
//   - a FUA write A acknowledges that was issued after B's Open returned is a violation
//     (its data entered A's buffer after the fence; it cannot be in the store);
//   - a FLUSH A acknowledges is a violation if it covers a write issued after B's Open
//     returned (same reason), or a write that B's recovered state provably lacks
//     (B's crash resolution found no legal state containing it);
//   - a FLUSH or FUA acknowledgement whose data landed before the fence is legal, e.g. a
//     FLUSH with nothing new to upload, or one waiting on an upload that won the race.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "dst/sim.h"
#include "nbd/protocol.h"
#include "util/checksum.h"

namespace portal::dst {
namespace {
constexpr uint64_t kHotRegionBlocks = 256;
}  // namespace

uint64_t Simulator::PickOffset() {
  const uint64_t size = k_.volume.size_bytes, bs = k_.volume.block_size;
  uint64_t off;
  if (!hot_.empty() && rng_.Below(16) != 0) {
    off = (hot_[rng_.Below(hot_.size())] + rng_.Below(kHotRegionBlocks)) * bs;
  } else {
    off = rng_.Below(size / bs) * bs;
  }
  if (rng_.Below(4) == 0) off += rng_.Below(bs);  // unaligned start
  off = std::min(off, size - 1);
  return off;
}

bool Simulator::PickOp(Writer* w, Op* op) {
  const WorkloadKnobs& k = k_.work;
  const uint64_t bs = k_.volume.block_size, size = k_.volume.size_bytes;
  const uint32_t weights[] = {k.w_read, k.w_write, k.w_unaligned, k.w_trim, k.w_zero,
                              k.w_huge_zero, k.w_flush, k.w_status, k.w_cache, k.w_admin,
                              k.w_sleep, k.w_snap, k.w_snap_read};
  uint64_t total = 0;
  for (uint32_t x : weights) total += x;
  uint64_t roll = rng_.Below(total);
  size_t kind = 0;
  while (roll >= weights[kind]) roll -= weights[kind++];
  const uint64_t max_data = uint64_t{k.max_write_blocks} * bs;
  auto clamp = [&](uint64_t len) { return std::max<uint64_t>(1, std::min(len, size - op->offset)); };
  op->w = w;
  if (kind == 11 || kind == 12) return PickSnapOp(w, op, kind == 11);
  switch (kind) {
    case 0:  // read
      op->type = OpType::kRead;
      op->offset = PickOffset();
      op->length = clamp(rng_.Below(3) == 0 ? 1 + rng_.Below(2 * bs) : 1 + rng_.Below(max_data));
      break;
    case 1:  // aligned write
      op->type = OpType::kWrite;
      op->offset = PickOffset() / bs * bs;
      op->length = clamp((1 + rng_.Below(k.max_write_blocks)) * bs);
      op->seed = rng_.Below(20) == 0 ? 0 : next_mutation_seed_++;
      break;
    case 2:  // unaligned write
      op->type = OpType::kWrite;
      op->offset = PickOffset();
      op->length = clamp(1 + rng_.Below(rng_.Below(2) ? 2 * bs : max_data));
      op->seed = next_mutation_seed_++;
      break;
    case 3:  // trim
    case 4:  // write zeroes
      op->type = kind == 3 ? OpType::kTrim : OpType::kZero;
      op->offset = PickOffset();
      op->length = clamp(1 + rng_.Below(4 * max_data));
      op->no_hole = kind == 4 && rng_.Below(2) == 0;
      break;
    case 5:  // huge zeroes or trim: up to the whole device
      op->type = rng_.Below(2) ? OpType::kTrim : OpType::kZero;
      op->offset = rng_.Below(4) == 0 ? 0 : PickOffset();
      op->length = clamp(rng_.Below(2) ? size : 1 + rng_.Below(size - op->offset));
      op->no_hole = op->type == OpType::kZero && rng_.Below(2) == 0;
      break;
    case 6:
      op->type = OpType::kFlush;
      break;
    case 7:
      op->type = OpType::kStatus;
      op->offset = PickOffset();
      // NBD lengths are 32-bit; a longer direct request would walk an exabyte.
      op->length = clamp(rng_.Below(2) ? 1 + rng_.Below(4 * max_data) : uint64_t{UINT32_MAX});
      op->max_extents = static_cast<uint32_t>(std::array{1, 2, 1000}[rng_.Below(3)]);
      break;
    case 8:
      op->type = OpType::kCache;
      op->offset = PickOffset();
      op->length = clamp(1 + rng_.Below(4 * max_data));
      break;
    case 9:
      op->type = std::array{OpType::kFlushMemtable, OpType::kCompact, OpType::kGc}[rng_.Below(3)];
      break;
    default: {  // time passes with no new request (flush interval, GC grace, backoff)
      const uint64_t ms = std::array{5ull, 200ull, 3000ull, 120000ull}[rng_.Below(4)];
      env_.AdvanceBy(rng_.Below(ms * kNanosPerMilli) + 1);
      return false;
    }
  }
  if (op->Mutates() && k.fua_permille > 0) op->fua = rng_.Below(1000) < k.fua_permille;
  const bool nbd_ok = w->nbd && op->type < OpType::kSnapCreate && op->type != OpType::kFlushMemtable &&
                      op->type != OpType::kCompact && op->type != OpType::kGc &&
                      op->length <= (uint64_t{1} << 31) &&
                      (op->type != OpType::kStatus || w->nbd->structured());
  op->via_nbd = nbd_ok && rng_.Below(1000) < k.nbd_permille;
  return true;
}

bool Simulator::Traced(const Op& op) const {
  if (trace_block_ == UINT64_MAX) return false;
  if (op.type == OpType::kFlush) return true;
  const uint64_t bs = k_.volume.block_size;
  return op.Ranged() && op.offset < (trace_block_ + 1) * bs && trace_block_ * bs < op.offset + op.length;
}

bool Simulator::Conflicts(const Op& op) const {
  if (!op.Ranged()) return false;
  for (const Op* o : op.w->ops) {
    if (!o->Ranged() || !(op.Mutates() || o->Mutates())) continue;
    if (op.offset < o->offset + o->length && o->offset < op.offset + op.length) return true;
  }
  return false;
}

void Simulator::IssueRandomOp() {
  Writer* w = primary_;
  for (auto& o : writers_) {  // the fenced-to-be writer keeps issuing for a while
    if (o->superseded && !o->dead && !o->closing && rng_.Below(3) == 0) w = o.get();
  }
  if (!w || w->dead || w->closing || !w->vol || (w == primary_ && opening_)) return;
  if (w->exclusive) return;
  if (w->pending_exclusive) {  // a snapshot create or restore waits for the others
    if (w->inflight > 0) return;
    std::unique_ptr<Op> op = std::move(w->pending_exclusive);
    if (!Healthy(w)) {
      w->snap_admin = false;
      return;
    }
    op->id = next_op_id_++;
    ++issued_;
    Op* raw = op.get();
    ops_.push_back(std::move(op));
    Issue(raw);
    return;
  }
  if (w->inflight >= k_.work.max_inflight) return;
  auto op = std::make_unique<Op>();
  for (int attempt = 0; attempt < 4; ++attempt) {
    *op = Op{};
    if (!PickOp(w, op.get())) return;
    if (op->Exclusive()) {
      w->pending_exclusive = std::move(op);
      return;
    }
    if (!Conflicts(*op)) {
      op->id = next_op_id_++;
      ++issued_;
      if (w->superseded) ++w->post_fork_ops;
      Op* raw = op.get();
      ops_.push_back(std::move(op));
      Issue(raw);
      return;
    }
  }
}

void Simulator::Issue(Op* op) {
  Writer* w = op->w;
  op->t_issue = Tick();
  w->ops.push_back(op);
  ++w->inflight;
  if (op->Mutates()) {
    Mutation m;
    m.id = op->id;
    m.offset = op->offset;
    m.length = op->length;
    m.seed = op->type == OpType::kWrite ? op->seed : 0;
    m.fua = op->fua;
    m.t_issue = op->t_issue;
    w->tl->Issue(m);
  }
  if (op->type == OpType::kWrite) {
    op->buf.resize(op->length);
    FillPattern(op->seed, op->offset, op->buf.data(), op->length);
  } else if (op->type == OpType::kRead || op->type == OpType::kSnapRead) {
    op->buf.assign(op->length, 0xee);
  }
  if (op->type >= OpType::kSnapCreate) return IssueSnap(op);
  Note(fmt::format("#{} w{} {}{} off={} len={}{}{}{}", op->id, w->id, OpName(op->type),
                   op->via_nbd ? "(nbd)" : "", op->offset, op->length, op->fua ? " FUA" : "",
                   op->no_hole ? " NO_HOLE" : "",
                   op->type == OpType::kWrite ? fmt::format(" seed={}", op->seed) : ""));
  if (Traced(*op)) {
    std::fprintf(stderr, "trace: t=%llu issue %s\n", (unsigned long long)op->t_issue,
                 history_.recent().back().c_str());
  }
  if (op->via_nbd) {
    IssueNbd(op);
  } else {
    IssueDirect(op);
  }
}

void Simulator::IssueDirect(Op* op) {
  volume::Volume& v = *op->w->vol;
  auto done = [this, op](Status st) { OnDone(op, st); };
  switch (op->type) {
    case OpType::kRead:
      return Start(v.Read(op->offset, op->buf, &op->zeroes), done);
    case OpType::kWrite:
      return Start(v.Write(op->offset, op->buf, {.fua = op->fua}), done);
    case OpType::kTrim:
      return Start(v.Trim(op->offset, op->length, {.fua = op->fua}), done);
    case OpType::kZero:
      return Start(v.WriteZeroes(op->offset, op->length, {.fua = op->fua, .no_hole = op->no_hole}),
                   done);
    case OpType::kFlush:
      return Start(v.Flush(), done);
    case OpType::kStatus:
      return Start(v.BlockStatus(op->offset, op->length, op->max_extents),
                   [this, op](Result<std::vector<device::StatusExtent>> r) {
                     if (r.ok()) op->extents = std::move(*r);
                     OnDone(op, r.status());
                   });
    case OpType::kCache:
      return Start(v.Cache(op->offset, op->length), done);
    case OpType::kFlushMemtable:
      return Start(v.FlushMemtable(), done);
    case OpType::kCompact:
      return Start(v.CompactAll(), done);
    case OpType::kGc:
      return Start(v.RunGc(), done);
    default:
      PORTAL_ASSERT(false, "snapshot requests go through IssueSnap");
  }
}

void Simulator::IssueNbd(Op* op) {
  using namespace portal::nbd;
  uint16_t type = 0, flags = op->fua ? NBD_CMD_FLAG_FUA : 0;
  std::string payload;
  switch (op->type) {
    case OpType::kRead: type = NBD_CMD_READ; break;
    case OpType::kWrite:
      type = NBD_CMD_WRITE;
      payload.assign(op->buf.begin(), op->buf.end());
      break;
    case OpType::kTrim: type = NBD_CMD_TRIM; break;
    case OpType::kZero:
      type = NBD_CMD_WRITE_ZEROES;
      if (op->no_hole) flags |= NBD_CMD_FLAG_NO_HOLE;
      break;
    case OpType::kFlush: type = NBD_CMD_FLUSH; break;
    case OpType::kStatus:
      type = NBD_CMD_BLOCK_STATUS;
      if (op->max_extents == 1) flags |= NBD_CMD_FLAG_REQ_ONE;
      break;
    case OpType::kCache: type = NBD_CMD_CACHE; break;
    default: PORTAL_ASSERT(false, "not an NBD request");
  }
  op->w->nbd->Send(type, flags, op->offset, static_cast<uint32_t>(op->length), std::move(payload),
                   [this, op](NbdClient::Reply r) {
                     Status st;
                     if (r.error == NBD_EIO) st = Status::Unavailable("NBD EIO");
                     else if (r.error == NBD_ESHUTDOWN) st = Status::Shutdown("NBD ESHUTDOWN");
                     else if (r.error != 0) st = Status::IOError(fmt::format("NBD error {}", r.error));
                     if (st.ok() && op->type == OpType::kRead) {
                       std::copy(r.data.begin(), r.data.end(), op->buf.begin());
                       op->zeroes = std::move(r.holes);
                     }
                     op->extents = std::move(r.extents);
                     if (op->type == OpType::kStatus && op->max_extents > 1) op->max_extents = 1u << 20;
                     OnDone(op, st);
                   });
}

bool Simulator::Tolerated(const Writer* w, const Status& st, bool read_like) const {
  if (st.ok()) return true;
  if (!Healthy(w)) return true;  // crashed, fenced or being fenced: errors are expected
  return read_like && st.IsUnavailable();  // bounded read retries ran out
}

void Simulator::OnDone(Op* op, const Status& st) {
  if (op->done) return Fail(fmt::format("request #{} completed twice", op->id));
  op->done = true;
  Writer* w = op->w;
  std::erase(w->ops, op);
  --w->inflight;
  const uint64_t t = Tick();
  history_.Mix(op->id);
  history_.Mix(uint64_t(st.code()));
  if (op->type == OpType::kRead && st.ok()) history_.Mix(Checksum64(op->buf.data(), op->buf.size()));
  if (op->type >= OpType::kSnapCreate) return CheckSnapReply(op, st);
  if (Traced(*op)) {
    std::fprintf(stderr, "trace: t=%llu done #%llu w%d %s: %s%s\n", (unsigned long long)t,
                 (unsigned long long)op->id, w->id, OpName(op->type), st.ToString().c_str(),
                 w->dead ? " (writer dead: ignored)" : "");
  }
  if (w->dead) {  // the process died first: nobody hears this reply
    op->buf.clear();
    op->buf.shrink_to_fit();
    return;
  }
  if (!st.ok()) {
    if (!Tolerated(w, st, op->type != OpType::kFlush)) {
      Fail(fmt::format("{} #{} on writer {} failed: {}", OpName(op->type), op->id, w->id,
                       st.ToString()));
    } else {
      ++tolerated_errors_;
    }
  }
  switch (op->type) {
    case OpType::kWrite:
    case OpType::kTrim:
    case OpType::kZero:
      CheckMutationReply(op, st, t);
      break;
    case OpType::kFlush:
      CheckFlushReply(op, st);
      break;
    case OpType::kRead:
      CheckReadReply(op, st);
      break;
    case OpType::kStatus:
      CheckStatusReply(op, st);
      break;
    default:
      break;
  }
  op->buf.clear();
  op->buf.shrink_to_fit();
}

void Simulator::CheckMutationReply(Op* op, const Status& st, uint64_t t) {
  Writer* w = op->w;
  w->tl->Complete(op->id, st.ok(), t);
  if (!st.ok() || !w->superseded) return;
  if (op->t_issue > w->fork_t) w->first_post_fork_ack = std::min(w->first_post_fork_ack, t);
  if (!op->fua) return;
  if (op->t_issue > w->fork_t) {
    return Fail(fmt::format("fenced writer {} acknowledged FUA {} #{} issued after the next "
                            "writer's Open returned",
                            w->id, OpName(op->type), op->id));
  }
  FenceCheck(w, {op->id}, fmt::format("FUA {} #{}", OpName(op->type), op->id));
}

void Simulator::CheckFlushReply(Op* op, const Status& st) {
  Writer* w = op->w;
  if (!st.ok()) {
    if (Healthy(w)) Fail(fmt::format("FLUSH #{} failed on a healthy volume: {}", op->id, st.ToString()));
    return;
  }
  const std::vector<uint64_t> claimed = w->tl->FlushSucceeded(op->t_issue);
  if (!w->superseded) return;
  if (op->t_issue > w->fork_t && w->first_post_fork_ack < op->t_issue) {
    return Fail(fmt::format("fenced writer {} acknowledged FLUSH #{} covering a write issued "
                            "after the next writer's Open returned",
                            w->id, op->id));
  }
  FenceCheck(w, claimed, fmt::format("FLUSH #{}", op->id));
}

void Simulator::FenceCheck(Writer* w, const std::vector<uint64_t>& claimed,
                           const std::string& what) {
  if (claimed.empty()) return;
  if (!w->successor_resolved) {
    deferred_claims_.emplace_back(w, claimed);
    return;
  }
  for (uint64_t id : claimed) {
    if (w->successor_absent.count(id)) {
      return Fail(fmt::format("fenced writer {} acknowledged {} as durable, covering write "
                              "#{}, but the writer that fenced it does not have that write",
                              w->id, what, id));
    }
  }
}

void Simulator::CheckReadReply(Op* op, const Status& st) {
  if (!st.ok()) return;
  Writer* w = op->w;
  std::string err = w->tl->CheckLive(op->offset, op->buf);
  if (!err.empty()) {
    return Fail(fmt::format("READ #{} on writer {} returned data no legal state has: {}", op->id,
                            w->id, err));
  }
  uint64_t last_end = 0;
  for (const auto& z : op->zeroes) {
    if (z.offset < last_end || z.length == 0 || z.offset + z.length > op->length) {
      return Fail(fmt::format("READ #{}: bad zero range [{}, +{})", op->id, z.offset, z.length));
    }
    if (std::any_of(op->buf.begin() + z.offset, op->buf.begin() + z.offset + z.length,
                    [](uint8_t c) { return c != 0; })) {
      return Fail(fmt::format("READ #{}: zero range [{}, +{}) holds data", op->id, z.offset,
                              z.length));
    }
    last_end = z.offset + z.length;
  }
}

void Simulator::CheckStatusReply(Op* op, const Status& st) {
  if (!st.ok()) return;
  if (op->extents.empty() || op->extents.size() > op->max_extents) {
    return Fail(fmt::format("BLOCK_STATUS #{}: {} extents for max {}", op->id,
                            op->extents.size(), op->max_extents));
  }
  uint64_t pos = op->offset;
  for (const auto& e : op->extents) {
    if (e.length == 0 || pos + e.length > op->offset + op->length) {
      return Fail(fmt::format("BLOCK_STATUS #{}: extent runs past the request", op->id));
    }
    if (e.zero || e.hole) {  // portalbd's holes read as zeroes too
      std::string err = op->w->tl->CheckZeroClaim(pos, e.length);
      if (!err.empty()) return Fail(fmt::format("BLOCK_STATUS #{}: {}", op->id, err));
    }
    pos += e.length;
  }
}

}  // namespace portal::dst
