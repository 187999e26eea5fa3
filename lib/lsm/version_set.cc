#include "lsm/version_set.h"

#include <algorithm>

#include <fmt/format.h>

namespace portal::lsm {

void VersionSet::Recover(Version first) {
  PORTAL_ASSERT(current_ == nullptr, "VersionSet::Recover called twice");
  current_ = std::make_shared<const Version>(std::move(first));
}

Status VersionSet::CheckBase(uint64_t base) const {
  PORTAL_ASSERT(current_ != nullptr, "VersionSet used before Recover");
  if (base == current_->number) return Status::Ok();
  return Status::Busy(fmt::format("stale base: version {}, current {}", base, current_->number));
}

Result<PreparedVersion> VersionSet::Prepare(const VersionEdit& edit) const {
  if (Status st = CheckBase(edit.base); !st.ok()) return st;
  Version next = *current_;
  next.number = current_->number + 1;
  if (edit.replace_levels) next.levels = *edit.replace_levels;
  Levels& levels = next.levels;
  for (const auto& [level, key] : edit.removed) {
    auto gone = [&](const SstRef& r) { return r.key == key; };
    if (level >= levels.size() || std::erase_if(levels[level], gone) == 0) {
      return Status::InvalidArgument(
          fmt::format("version edit removes {} from L{}, which does not hold it", key, level));
    }
  }
  for (const auto& [level, add] : edit.added) {
    if (levels.size() <= level) levels.resize(level + 1);
    std::vector<SstRef>& into = levels[level];
    if (level == 0) {
      into.insert(into.begin(), add.begin(), add.end());
    } else {
      into.insert(into.end(), add.begin(), add.end());
      std::sort(into.begin(), into.end(),
                [](const SstRef& a, const SstRef& b) { return a.min_block < b.min_block; });
    }
  }
  if (edit.drop_empty_tail) {
    while (levels.size() > 1 && levels.back().empty()) levels.pop_back();
  }
  if (edit.applied_segment) next.applied_segment = *edit.applied_segment;
  if (edit.applied_seq) next.applied_seq = *edit.applied_seq;
  return PreparedVersion(this, std::make_shared<const Version>(std::move(next)));
}

Status VersionSet::Install(PreparedVersion next) {
  PORTAL_ASSERT(next.set_ == this, "a version prepared by another VersionSet");
  if (Status st = CheckBase(next.number() - 1); !st.ok()) return st;
  current_ = std::move(next.next_);
  return Status::Ok();
}

}  // namespace portal::lsm
