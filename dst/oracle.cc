#include "dst/oracle.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "util/checksum.h"

namespace portal::dst {
namespace {

// Legal states of one block are enumerated; concurrency on a block is bounded by the
// workload, so this is a safety net against a pathological history, not a tuning knob.
constexpr uint64_t kMaxLeaves = 1 << 14;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}

}  // namespace

void FillPattern(uint64_t seed, uint64_t offset, uint8_t* out, size_t len) {
  if (seed == 0) {
    std::memset(out, 0, len);
    return;
  }
  const uint64_t key = Mix(seed);
  size_t i = 0;
  while (i < len) {
    const uint64_t o = offset + i;
    const uint64_t word = Mix(key ^ (o / 8));
    for (uint64_t b = o % 8; b < 8 && i < len; ++b, ++i) out[i] = uint8_t(word >> (8 * b));
  }
}

Timeline::Timeline(uint32_t block_size, uint64_t size_bytes) : bs_(block_size), size_(size_bytes) {}

const Mutation* Timeline::Find(uint64_t id) const {
  auto it = muts_.find(id);
  return it == muts_.end() ? nullptr : &it->second;
}

void Timeline::Issue(const Mutation& in) {
  Mutation& m = muts_[in.id] = in;
  m.refs = 0;
  if (m.length == 0) return;
  const uint64_t first = m.offset / bs_, last = (m.offset + m.length - 1) / bs_;
  if (m.seed != 0) {  // data: bounded by the payload size
    for (uint64_t b = first; b <= last; ++b) {
      blocks_[b].pending.push_back(m.id);
      ++m.refs;
    }
    return;
  }
  for (auto it = blocks_.lower_bound(first); it != blocks_.end() && it->first <= last; ++it) {
    it->second.pending.push_back(m.id);
    ++m.refs;
  }
}

void Timeline::Complete(uint64_t id, bool ok, uint64_t t_done) {
  auto it = muts_.find(id);
  if (it == muts_.end()) return;
  Mutation& m = it->second;
  m.t_done = t_done;
  m.state = ok ? Mutation::State::kAcked : Mutation::State::kFailed;
  if (ok && m.fua) {
    m.durable = true;
  } else if (ok) {
    acked_undurable_.insert(id);
  }
  if (m.refs == 0) {
    acked_undurable_.erase(id);
    muts_.erase(it);
    return;
  }
  if (m.durable) {
    const uint64_t first = m.offset / bs_, last = (m.offset + m.length - 1) / bs_;
    std::vector<uint64_t> touched;
    for (auto b = blocks_.lower_bound(first); b != blocks_.end() && b->first <= last; ++b) {
      touched.push_back(b->first);
    }
    for (uint64_t b : touched) Compact(b);
  }
}

std::vector<uint64_t> Timeline::AckedBefore(uint64_t t) const {
  std::vector<uint64_t> out;
  for (uint64_t id : acked_undurable_) {
    if (muts_.at(id).t_done < t) out.push_back(id);
  }
  return out;
}

std::vector<uint64_t> Timeline::FlushSucceeded(uint64_t t_flush_issue) {
  std::vector<uint64_t> claimed = AckedBefore(t_flush_issue);
  std::set<uint64_t> touched;
  for (uint64_t id : claimed) {
    Mutation& m = muts_.at(id);
    m.durable = true;
    acked_undurable_.erase(id);
    const uint64_t first = m.offset / bs_, last = (m.offset + m.length - 1) / bs_;
    for (auto b = blocks_.lower_bound(first); b != blocks_.end() && b->first <= last; ++b) {
      touched.insert(b->first);
    }
  }
  for (uint64_t b : touched) Compact(b);
  return claimed;
}

bool Timeline::Required(const Mutation& m, Mode mode) const {
  return mode == Mode::kLive ? m.state == Mutation::State::kAcked : m.durable;
}

void Timeline::ApplyTo(const Mutation& m, uint64_t block, uint8_t* content) const {
  const uint64_t b0 = block * bs_;
  const uint64_t from = std::max(m.offset, b0), to = std::min(m.offset + m.length, b0 + bs_);
  if (from >= to) return;
  FillPattern(m.seed, from, content + (from - b0), to - from);
}

template <typename Fn>
bool Timeline::Enumerate(uint64_t block, Mode mode, uint32_t lo, uint32_t hi, Fn&& fn) const {
  std::vector<const Mutation*> list;
  std::vector<uint8_t> start(bs_, 0);
  auto bit = blocks_.find(block);
  if (bit != blocks_.end()) {
    if (!bit->second.base.empty()) start = bit->second.base;
    const uint64_t b0 = block * bs_;
    for (uint64_t id : bit->second.pending) {
      const Mutation& m = muts_.at(id);
      // Live mode: every acknowledged mutation is required, so the closure rule never
      // excludes one, and mutations outside the compared bytes cannot matter.
      if (mode == Mode::kLive &&
          (m.offset + m.length <= b0 + lo || m.offset >= b0 + hi)) {
        continue;
      }
      list.push_back(&m);
    }
  }
  uint64_t leaves = 0;
  bool stop = false;
  std::vector<uint64_t> included;
  // Depth-first over include/exclude in issue order. `min_excl_done`: the earliest finish
  // time of an excluded acknowledged mutation; anything issued after it is excluded.
  auto dfs = [&](auto& self, size_t i, const std::vector<uint8_t>& content,
                 uint64_t min_excl_done) -> void {
    if (stop) return;
    if (i == list.size()) {
      if (++leaves > kMaxLeaves || !fn(content, included)) stop = true;
      return;
    }
    const Mutation& m = *list[i];
    const bool forced_out = m.t_issue > min_excl_done;
    const bool must = Required(m, mode);
    if (must && forced_out) return;
    if (!forced_out) {
      std::vector<uint8_t> next = content;
      ApplyTo(m, block, next.data());
      included.push_back(m.id);
      self(self, i + 1, next, min_excl_done);
      included.pop_back();
    }
    if (!must) {
      const uint64_t excl =
          m.state == Mutation::State::kAcked ? std::min(min_excl_done, m.t_done) : min_excl_done;
      self(self, i + 1, content, excl);
    }
  };
  dfs(dfs, 0, start, kNever);
  return leaves <= kMaxLeaves;
}

std::string Timeline::Describe(uint64_t block, Mode mode, uint32_t lo, uint32_t hi,
                               std::span<const uint8_t> observed) const {
  std::string s = fmt::format("block {} bytes [{}, {}) ({} mode): observed xxh3={:016x}",
                              block, lo, hi, mode == Mode::kLive ? "live" : "crash",
                              Checksum64(observed.data(), observed.size()));
  size_t states = 0;
  size_t best_diff = 0;
  size_t best_first = 0;
  Enumerate(block, mode, lo, hi, [&](const std::vector<uint8_t>& c, const std::vector<uint64_t>&) {
    ++states;
    size_t diff = 0, first = SIZE_MAX;
    for (uint32_t i = lo; i < hi; ++i) {
      if (c[i] != observed[i - lo]) {
        ++diff;
        if (first == SIZE_MAX) first = i;
      }
    }
    if (states == 1 || diff < best_diff) {
      best_diff = diff;
      best_first = first;
    }
    return true;
  });
  s += fmt::format(" matches none of {} legal states (closest differs in {} bytes from "
                   "byte {}); ",
                   states, best_diff, best_first);
  auto bit = blocks_.find(block);
  if (bit == blocks_.end()) return s + "block never written (expected zeroes)";
  s += fmt::format("base {}; pending:", bit->second.base.empty() ? "zero" : "data");
  for (uint64_t id : bit->second.pending) {
    const Mutation& m = muts_.at(id);
    static const char* kState[] = {"inflight", "acked", "failed"};
    s += fmt::format(" [#{} {} off={} len={} seed={} issued={} done={}{}{}]", m.id,
                     kState[int(m.state)], m.offset, m.length, m.seed, m.t_issue,
                     m.t_done == kNever ? std::string("-") : std::to_string(m.t_done),
                     m.fua ? " fua" : "", m.durable ? " durable" : "");
  }
  return s;
}

std::string Timeline::CheckLive(uint64_t offset, std::span<const uint8_t> observed) const {
  const uint64_t end = offset + observed.size();
  for (uint64_t b = offset / bs_; b * bs_ < end; ++b) {
    const uint64_t b0 = b * bs_;
    const uint32_t lo = uint32_t(std::max(offset, b0) - b0);
    const uint32_t hi = uint32_t(std::min(end, b0 + bs_) - b0);
    std::span<const uint8_t> got = observed.subspan(b0 + lo - offset, hi - lo);
    if (!blocks_.count(b)) {
      if (!AllZero(got.data(), got.size())) return Describe(b, Mode::kLive, lo, hi, got);
      continue;
    }
    bool found = false;
    const bool complete =
        Enumerate(b, Mode::kLive, lo, hi, [&](const std::vector<uint8_t>& c, const auto&) {
          found = std::memcmp(c.data() + lo, got.data(), got.size()) == 0;
          return !found;
        });
    if (!found && !complete) {  // too many optional mutations to tell: not a verdict
      ++inconclusive_;
      continue;
    }
    if (!found) return Describe(b, Mode::kLive, lo, hi, got);
  }
  return "";
}

std::string Timeline::CheckZeroClaim(uint64_t offset, uint64_t len) const {
  const uint64_t end = offset + len;
  std::vector<uint8_t> zeroes(bs_, 0);
  for (auto it = blocks_.lower_bound(offset / bs_); it != blocks_.end() && it->first * bs_ < end;
       ++it) {
    const uint64_t b = it->first, b0 = b * bs_;
    const uint32_t lo = uint32_t(std::max(offset, b0) - b0);
    const uint32_t hi = uint32_t(std::min(end, b0 + bs_) - b0);
    bool found = false;
    Enumerate(b, Mode::kLive, lo, hi, [&](const std::vector<uint8_t>& c, const auto&) {
      found = AllZero(c.data() + lo, hi - lo);
      return !found;
    });
    if (!found) {
      return "BLOCK_STATUS claims zeroes: " +
             Describe(b, Mode::kLive, lo, hi, std::span(zeroes.data(), hi - lo));
    }
  }
  return "";
}

bool Timeline::Matching(uint64_t block, Mode mode, std::span<const uint8_t> observed,
                        std::set<uint64_t>* inter, std::set<uint64_t>* uni,
                        bool* complete) const {
  bool any = false;
  const bool done = Enumerate(block, mode, 0, bs_, [&](const std::vector<uint8_t>& c,
                                                       const std::vector<uint64_t>& inc) {
    if (std::memcmp(c.data(), observed.data(), bs_) != 0) return true;
    std::set<uint64_t> s(inc.begin(), inc.end());
    if (!any) {
      *inter = s;
    } else {
      std::erase_if(*inter, [&](uint64_t id) { return !s.count(id); });
    }
    uni->insert(s.begin(), s.end());
    any = true;
    return true;
  });
  if (complete) *complete = done;
  return any;
}

std::string Timeline::Resolve(uint64_t block, std::span<const uint8_t> observed,
                              std::set<uint64_t>* present, std::set<uint64_t>* absent) {
  std::set<uint64_t> inter, uni;
  bool complete = true;
  if (!Matching(block, Mode::kCrash, observed, &inter, &uni, &complete)) {
    return Describe(block, Mode::kCrash, 0, bs_, observed) +
           (complete ? "" : " (enumeration bound hit)");
  }
  auto bit = blocks_.find(block);
  if (bit == blocks_.end()) return "";  // zero and nothing pending: nothing to learn
  for (uint64_t id : bit->second.pending) {
    if (present && inter.count(id)) present->insert(id);
    if (absent && !uni.count(id)) absent->insert(id);
  }
  std::vector<uint64_t> pending = std::move(bit->second.pending);
  bit->second.pending.clear();
  if (AllZero(observed.data(), observed.size())) {
    blocks_.erase(bit);
  } else {
    bit->second.base.assign(observed.begin(), observed.end());
  }
  // The dead writer's requests never complete on this timeline: drop them all.
  for (uint64_t id : pending) {
    auto m = muts_.find(id);
    if (m != muts_.end() && --m->second.refs == 0) {
      acked_undurable_.erase(id);
      muts_.erase(m);
    }
  }
  return "";
}

std::string Timeline::Audit(uint64_t block, std::span<const uint8_t> observed) {
  auto bit = blocks_.find(block);
  if (bit == blocks_.end()) {
    if (AllZero(observed.data(), observed.size())) return "";
    return Describe(block, Mode::kLive, 0, bs_, observed);
  }
  std::set<uint64_t> inter, uni;
  if (!Matching(block, Mode::kLive, observed, &inter, &uni)) {
    return Describe(block, Mode::kLive, 0, bs_, observed);
  }
  std::vector<uint64_t> keep;
  for (uint64_t id : bit->second.pending) {
    const Mutation& m = muts_.at(id);
    if (m.state == Mutation::State::kFailed) {
      if (inter.count(id)) {
        // Installed on this block before it failed (a failed multi-block request may have
        // installed some blocks and not others): from now on an acknowledged mutation of
        // this block alone.
        Mutation part = m;
        part.id = next_synthetic_id_++;
        part.offset = std::max(m.offset, block * bs_);
        part.length = std::min(m.offset + m.length, (block + 1) * bs_) - part.offset;
        part.state = Mutation::State::kAcked;
        part.refs = 1;
        muts_[part.id] = part;
        acked_undurable_.insert(part.id);
        Unref(id);
        keep.push_back(part.id);
        continue;
      }
      if (!uni.count(id)) {
        Unref(id);  // never installed here: it cannot appear any more
        continue;
      }
    }
    keep.push_back(id);
  }
  bit->second.pending = std::move(keep);
  Compact(block);
  return "";
}

void Timeline::Unref(uint64_t id) {
  auto it = muts_.find(id);
  if (it == muts_.end()) return;
  if (--it->second.refs == 0 && it->second.state != Mutation::State::kInflight) {
    acked_undurable_.erase(id);
    muts_.erase(it);
  }
}

void Timeline::Compact(uint64_t block) {
  auto bit = blocks_.find(block);
  if (bit == blocks_.end()) return;
  Block& blk = bit->second;
  const uint64_t b0 = block * bs_;
  auto span_of = [&](const Mutation& m) {
    return std::make_pair(std::max(m.offset, b0), std::min(m.offset + m.length, b0 + bs_));
  };
  // A mutation whose bytes in this block a later durable one covers cannot change any
  // legal state: the later one is always applied after it.
  std::vector<uint64_t> keep;
  for (size_t i = 0; i < blk.pending.size(); ++i) {
    const Mutation& m = muts_.at(blk.pending[i]);
    auto [a, b] = span_of(m);
    bool covered = false;
    for (size_t j = i + 1; j < blk.pending.size() && !covered; ++j) {
      const Mutation& n = muts_.at(blk.pending[j]);
      auto [c, d] = span_of(n);
      covered = n.durable && m.t_done < n.t_issue && c <= a && b <= d;
    }
    if (covered) {
      Unref(m.id);
    } else {
      keep.push_back(m.id);
    }
  }
  blk.pending = std::move(keep);
  // Leading durable mutations are in every legal state: fold them into the base.
  size_t folded = 0;
  while (folded < blk.pending.size() && muts_.at(blk.pending[folded]).durable) {
    if (blk.base.empty()) blk.base.assign(bs_, 0);
    ApplyTo(muts_.at(blk.pending[folded]), block, blk.base.data());
    ++folded;
  }
  if (folded > 0) {
    std::vector<uint64_t> gone(blk.pending.begin(), blk.pending.begin() + folded);
    blk.pending.erase(blk.pending.begin(), blk.pending.begin() + folded);
    for (uint64_t id : gone) Unref(id);
  }
  if (blk.pending.empty() && (blk.base.empty() || AllZero(blk.base.data(), bs_))) {
    blocks_.erase(bit);
  }
}

std::vector<uint64_t> Timeline::Blocks() const {
  std::vector<uint64_t> out;
  out.reserve(blocks_.size());
  for (const auto& [b, _] : blocks_) out.push_back(b);
  return out;
}

void Timeline::AckedContent(uint64_t block, uint8_t* out) const {
  std::memset(out, 0, bs_);
  auto bit = blocks_.find(block);
  if (bit == blocks_.end()) return;
  if (!bit->second.base.empty()) std::memcpy(out, bit->second.base.data(), bs_);
  for (uint64_t id : bit->second.pending) {
    const Mutation& m = muts_.at(id);
    if (m.state == Mutation::State::kAcked) ApplyTo(m, block, out);
  }
}

}  // namespace portal::dst
