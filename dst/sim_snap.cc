// Snapshots in the simulation (dst/README.md "Snapshots"): SNAP_CREATE, SNAP_DELETE and
// SNAP_RESTORE requests, reads through snapshot devices, and what every open must show.
//
// Oracle. A create or a restore runs alone on its writer (the writer's other requests
// drain first, and nothing is issued until it is answered), so the snapshot's content is
// the writer's timeline at that instant with every acknowledged write durable (a create
// FLUSHes first). A SnapOracle keeps that copy; reads of the snapshot are checked
// against it, and every verification (after each open, in each audit) pins it: from
// then on its content is exact, across crashes, restores and reopens.
//
// Outcomes. An acknowledged create means the snapshot exists until a delete is
// acknowledged; a healthy writer's failed create or delete did nothing (their manifest
// commit retries until it lands or the writer is fenced). A create or delete in flight
// when its writer crashed or was superseded may or may not have landed: the next open's
// ListSnapshots decides, and a superseded writer that later acknowledges it must agree.
// A restore replaces the writer's timeline with the snapshot's (one manifest write);
// one of unknown outcome leaves the next writer either restored or not, nothing between.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "dst/sim.h"

namespace portal::dst {
namespace {
constexpr size_t kMaxSnapshots = 4;  // live at once (each is verified at every open)
}  // namespace

bool Simulator::PickSnapOp(Writer* w, Op* op, bool admin) {
  if (w != primary_ || !Healthy(w)) return false;
  std::vector<std::string> live;
  for (const auto& [name, s] : snaps_) {
    if (s.must_exist && !s.busy) live.push_back(name);
  }
  if (!admin) {
    if (live.empty()) return false;
    op->type = OpType::kSnapRead;
    op->snap = live[rng_.Below(live.size())];
    const uint64_t bs = k_.volume.block_size, size = k_.volume.size_bytes;
    op->offset = PickOffset();
    const uint64_t max_data = uint64_t{k_.work.max_write_blocks} * bs;
    op->length = std::max<uint64_t>(
        1, std::min(1 + rng_.Below(rng_.Below(3) == 0 ? 2 * bs : max_data), size - op->offset));
    return true;
  }
  if (w->snap_admin) return false;
  const uint64_t roll = rng_.Below(100);
  if (live.empty() || (live.size() < kMaxSnapshots && roll < 45)) {
    op->type = OpType::kSnapCreate;
  } else if (roll < 75) {
    op->type = OpType::kSnapDelete;
    std::erase_if(live, [&](const std::string& n) { return snaps_[n].readers > 0; });
    if (live.empty()) return false;
    op->snap = live[rng_.Below(live.size())];
  } else {
    op->type = OpType::kSnapRestore;
    op->snap = live[rng_.Below(live.size())];
  }
  w->snap_admin = true;
  return true;
}

void Simulator::IssueSnap(Op* op) {
  Writer* w = op->w;
  volume::Volume& v = *w->vol;
  ++snap_ops_;
  std::string armed;
  auto arm = [&](FaultPlan::SnapOp kind) {
    if (plan_.enabled() && rng_.Below(1000) < k_.work.snap_trigger_permille) {
      armed = plan_.ArmSnapshotTrigger(w->id, kind, rng_);
      if (!armed.empty()) armed = " armed: " + armed;
    }
  };
  switch (op->type) {
    case OpType::kSnapCreate: {
      op->snap = fmt::format("s{}", next_snap_++);
      SnapOracle& s = snaps_[op->snap];
      s.tl = std::make_unique<Timeline>(*w->tl);
      (void)s.tl->FlushSucceeded(op->t_issue);  // if it exists, the create's FLUSH succeeded
      s.busy = true;
      w->exclusive = true;
      arm(FaultPlan::SnapOp::kCreate);
      break;
    }
    case OpType::kSnapDelete: {
      SnapOracle& s = snaps_.at(op->snap);
      s.must_exist = false;
      s.busy = true;
      arm(FaultPlan::SnapOp::kDelete);
      break;
    }
    case OpType::kSnapRestore:
      w->restore_alt = std::make_unique<Timeline>(*snaps_.at(op->snap).tl);
      w->restore_name = op->snap;
      w->restore_resolved = -1;
      w->exclusive = true;
      ++restores_;
      arm(FaultPlan::SnapOp::kRestore);
      break;
    default:
      break;
  }
  Note(fmt::format("#{} w{} {} {}{}", op->id, w->id, OpName(op->type), op->snap,
                   op->type == OpType::kSnapRead
                       ? fmt::format(" off={} len={}", op->offset, op->length)
                       : armed));
  if (trace_block_ != UINT64_MAX && op->type != OpType::kSnapRead) {
    std::fprintf(stderr, "trace: t=%llu issue %s\n", (unsigned long long)op->t_issue,
                 history_.recent().back().c_str());
  }
  auto done = [this, op](Status st) { OnDone(op, st); };
  switch (op->type) {
    case OpType::kSnapCreate:
      return Start(v.CreateSnapshot(op->snap),
                   [this, op](Result<volume::SnapshotInfo> r) { OnDone(op, r.status()); });
    case OpType::kSnapDelete:
      return Start(v.DeleteSnapshot(op->snap), done);
    case OpType::kSnapRestore:
      return Start(v.RestoreSnapshot(op->snap), done);
    default: {
      ++snaps_.at(op->snap).readers;
      auto dev = v.OpenSnapshot(op->snap);
      if (!dev.ok()) return OnDone(op, dev.status());
      op->snap_dev = std::move(*dev);
      return Start(op->snap_dev->Read(op->offset, op->buf, &op->zeroes), done);
    }
  }
}

void Simulator::CheckSnapReply(Op* op, const Status& st) {
  Writer* w = op->w;
  op->snap_dev.reset();
  if (op->Exclusive()) w->exclusive = false;
  if (op->SnapAdmin()) w->snap_admin = false;
  SnapOracle* s = snaps_.count(op->snap) ? &snaps_.at(op->snap) : nullptr;
  if (op->type == OpType::kSnapRead) {
    --s->readers;
  } else if (op->type != OpType::kSnapRestore) {
    s->busy = false;
  }
  if (trace_block_ != UINT64_MAX && op->type != OpType::kSnapRead) {
    std::fprintf(stderr, "trace: done #%llu w%d %s %s: %s%s\n", (unsigned long long)op->id,
                 w->id, OpName(op->type), op->snap.c_str(), st.ToString().c_str(),
                 w->dead ? " (writer dead: ignored)" : "");
  }
  std::vector<uint8_t> buf = std::move(op->buf);
  op->buf = {};
  if (w->dead) return;  // nobody hears it; the next open's listing decides
  if (op->type == OpType::kSnapDelete && s && !s->clone.empty()) {
    // A clone reads through it: a delete must be refused, naming the clone.
    if (st.ok()) {
      return Fail(fmt::format("SNAP_DELETE {} #{} acknowledged while clone {} reads it",
                              op->snap, op->id, s->clone));
    }
    if (st.code() == Status::Code::kBusy) {
      if (st.ToString().find(s->clone) == std::string::npos) {
        return Fail("SNAP_DELETE refused without naming the clone: " + st.ToString());
      }
      s->must_exist = true;
      return;
    }
  }
  if (!st.ok()) ++tolerated_errors_;
  const bool healthy = Healthy(w);
  // A healthy writer's snapshot requests fail only with a retryable read error (an SST
  // index or the snapshot's own map); anything else is a bug.
  if (!st.ok() && healthy && !st.IsUnavailable()) {
    return Fail(fmt::format("{} {} #{} on writer {} failed: {}", OpName(op->type), op->snap,
                            op->id, w->id, st.ToString()));
  }
  switch (op->type) {
    case OpType::kSnapCreate:
      if (st.ok()) {
        if (w->superseded && w->successor_resolved && !s->may_exist) {
          return Fail(fmt::format("fenced writer {} acknowledged SNAP_CREATE {} #{}, but the "
                                  "writer that fenced it does not list it",
                                  w->id, op->snap, op->id));
        }
        s->must_exist = s->may_exist = true;
        const std::vector<uint64_t> claimed = w->tl->FlushSucceeded(op->t_issue);
        if (w->superseded) FenceCheck(w, claimed, fmt::format("SNAP_CREATE #{}", op->id));
      } else if (healthy) {
        s->may_exist = false;
        s->tl.reset();
      }
      break;
    case OpType::kSnapDelete:
      if (st.ok()) {
        if (w->superseded && w->successor_resolved && s->must_exist) {
          return Fail(fmt::format("fenced writer {} acknowledged SNAP_DELETE {} #{}, but the "
                                  "writer that fenced it still lists it",
                                  w->id, op->snap, op->id));
        }
        s->must_exist = s->may_exist = false;
        s->tl.reset();
      } else if (healthy) {
        s->must_exist = true;
      }
      break;
    case OpType::kSnapRestore:
      if (st.ok()) {
        if (w->superseded && w->restore_resolved == 0) {
          return Fail(fmt::format("fenced writer {} acknowledged SNAP_RESTORE {} #{}, but the "
                                  "writer that fenced it was not restored",
                                  w->id, op->snap, op->id));
        }
        *w->tl = *w->restore_alt;
        w->restore_alt.reset();
      } else if (healthy) {
        w->restore_alt.reset();
      }
      break;
    default: {  // SNAP_READ
      if (!st.ok()) {
        if (healthy && !st.IsUnavailable()) {
          Fail(fmt::format("SNAP_READ {} #{} failed: {}", op->snap, op->id, st.ToString()));
        }
        return;
      }
      ++snap_reads_;
      if (!s->tl) return;  // deleted meanwhile by a successor's listing
      std::string err = s->tl->CheckLive(op->offset, buf);
      if (!err.empty()) {
        return Fail(fmt::format("SNAP_READ {} #{} returned data the snapshot never held: {}",
                                op->snap, op->id, err));
      }
      for (const auto& z : op->zeroes) {
        if (z.offset + z.length > buf.size() ||
            std::any_of(buf.begin() + z.offset, buf.begin() + z.offset + z.length,
                        [](uint8_t c) { return c != 0; })) {
          return Fail(fmt::format("SNAP_READ #{}: bad zero range [{}, +{})", op->id, z.offset,
                                  z.length));
        }
      }
      break;
    }
  }
}

std::unique_ptr<Timeline> Simulator::TakeRestoreAlt(Writer* w, Writer** from) {
  for (auto& o : writers_) {
    if (o.get() != w && o->restore_alt && (o->dead || o->superseded || o->contested)) {
      *from = o.get();
      return std::make_unique<Timeline>(*o->restore_alt);
    }
  }
  return nullptr;
}

void Simulator::CheckSnapshotList(Writer* w, bool settle) {
  const std::vector<volume::SnapshotInfo> listed = w->vol->ListSnapshots();
  std::set<std::string> names;
  for (const auto& info : listed) {
    names.insert(info.name);
    auto it = snaps_.find(info.name);
    if (it == snaps_.end() || !it->second.may_exist || !it->second.tl) {
      return Fail(fmt::format("writer {} lists snapshot '{}', which {}", w->id, info.name,
                              it == snaps_.end() ? "was never created"
                                                 : "was deleted or never acknowledged"));
    }
    // A damaged snapshot stays listed, its size unknown (0) until its object is back.
    if (info.size_bytes != k_.volume.size_bytes && (settle || info.size_bytes != 0)) {
      return Fail(fmt::format("snapshot '{}' has size {}", info.name, info.size_bytes));
    }
  }
  for (auto& [name, s] : snaps_) {
    const bool there = names.count(name) > 0;
    if (s.must_exist && !there) {
      return Fail(fmt::format("writer {} lost snapshot '{}' (its create was acknowledged)",
                              w->id, name));
    }
    if (!settle) continue;
    s.must_exist = s.may_exist = there;
    if (!there) s.tl.reset();
  }
  Note(fmt::format("writer {} lists {} snapshots", w->id, listed.size()));
}

void Simulator::VerifySnapshots(Writer* w, bool damaged) {
  const uint64_t bs = k_.volume.block_size;
  const uint64_t nblocks = k_.volume.size_bytes / bs;
  plan_.set_triggers_suspended(w->id, true);
  for (auto& [name, s] : snaps_) {
    if (failed() || w->dead) break;
    if (!s.must_exist || s.busy || !s.tl) continue;
    auto dev = w->vol->OpenSnapshot(name);
    if (!dev.ok() && damaged) {
      ++damage_errors_;
      Note(fmt::format("damage: OpenSnapshot({}) on writer {}: {}", name, w->id,
                       dev.status().ToString()));
      continue;
    }
    if (!dev.ok()) {
      Fail(fmt::format("OpenSnapshot({}) on writer {}: {}", name, w->id, dev.status().ToString()));
      break;
    }
    std::vector<uint64_t> blocks = s.tl->Blocks();
    for (int i = 0; i < 4; ++i) blocks.push_back(rng_.Below(nblocks));
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    if (damaged) {
      // Judged on a copy: what reads must be legal, nothing is pinned.
      Timeline scratch = *s.tl;
      for (const auto& [b, data] : ReadDamaged(w, blocks, dev->get())) {
        std::string err = scratch.Resolve(b, data, nullptr, nullptr);
        if (!err.empty()) {
          Fail(fmt::format("snapshot '{}' read through writer {} over a damaged store ({}): {}",
                           name, w->id, damage_.what, err));
          break;
        }
      }
      ++snap_verified_;
      continue;
    }
    for (size_t i = 0; i < blocks.size() && !failed();) {
      size_t j = i + 1;
      while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1 && j - i < 64) ++j;
      std::vector<uint8_t> data;
      if (!ReadBlocks(w, blocks[i], j - i, &data, dev->get())) break;
      for (size_t k = i; k < j; ++k) {
        std::span<const uint8_t> blk(data.data() + (k - i) * bs, bs);
        std::string err = s.tl->Resolve(blocks[k], blk, nullptr, nullptr);
        if (!err.empty()) {
          Fail(fmt::format("snapshot '{}' read through writer {}: {}", name, w->id, err));
          break;
        }
      }
      i = j;
    }
    ++snap_verified_;
  }
  plan_.set_triggers_suspended(w->id, false);
}

}  // namespace portal::dst
