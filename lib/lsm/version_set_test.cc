#include "lsm/version_set.h"

#include <catch2/catch.hpp>

namespace portal::lsm {
namespace {

SstRef Ref(std::string key, uint64_t min_block, uint64_t end_block) {
  return SstRef{std::move(key), min_block, end_block, 100, 1, end_block - min_block};
}

std::vector<std::string> Keys(const std::vector<SstRef>& level) {
  std::vector<std::string> out;
  for (const auto& r : level) out.push_back(r.key);
  return out;
}

// Applies `edit` as the volume does: prepare, (persist), install.
Status Apply(VersionSet& set, const VersionEdit& edit) {
  Result<PreparedVersion> next = set.Prepare(edit);
  if (!next.ok()) return next.status();
  return set.Install(std::move(*next));
}

TEST_CASE("an edit against the current version becomes the next version", "[lsm][version]") {
  VersionSet set;
  set.Recover(Version{7, {{Ref("a", 0, 10)}}, 3, 30});
  VersionEdit edit;
  edit.base = 7;
  edit.added[0] = {Ref("b", 5, 20)};
  edit.applied_segment = 4;
  REQUIRE(Apply(set, edit).ok());
  const Version& v = *set.current();
  CHECK(v.number == 8);
  CHECK(Keys(v.levels[0]) == std::vector<std::string>{"b", "a"});  // newest first
  CHECK(v.applied_segment == 4);
  CHECK(v.applied_seq == 30);  // not named by the edit: carried over
}

TEST_CASE("a stale base is refused and leaves the current version as it was", "[lsm][version]") {
  VersionSet set;
  set.Recover(Version{1, {{Ref("a", 0, 10)}}, 0, 0});
  VersionEdit job;  // computed against version 1...
  job.base = 1;
  job.removed.emplace_back(0, "a");
  job.added[1] = {Ref("c", 0, 10)};
  VersionEdit restore;  // ...which a restore replaces first
  restore.base = 1;
  restore.replace_levels = Levels{{Ref("r", 0, 50)}};
  REQUIRE(Apply(set, restore).ok());
  const std::shared_ptr<const Version> before = set.current();

  Status st = Apply(set, job);
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(st.message() == "stale base: version 1, current 2");
  CHECK(set.current() == before);
  CHECK(set.current()->number == 2);
  CHECK(Keys(set.current()->levels[0]) == std::vector<std::string>{"r"});
}

TEST_CASE("install re-checks the base: of two edits prepared together only one commits",
          "[lsm][version]") {
  VersionSet set;
  set.Recover(Version{4, {}, 0, 0});
  VersionEdit a, b;
  a.base = b.base = 4;
  a.added[0] = {Ref("a", 0, 1)};
  b.added[0] = {Ref("b", 0, 1)};
  auto pa = set.Prepare(a);
  auto pb = set.Prepare(b);
  REQUIRE(pa.ok());
  REQUIRE(pb.ok());
  REQUIRE(set.Install(std::move(*pa)).ok());
  Status st = set.Install(std::move(*pb));
  CHECK(st.code() == Status::Code::kBusy);
  CHECK(set.current()->number == 5);
  CHECK(Keys(set.current()->levels[0]) == std::vector<std::string>{"a"});
}

TEST_CASE("an edit removing a file its level does not hold is refused", "[lsm][version]") {
  VersionSet set;
  set.Recover(Version{1, {{Ref("a", 0, 10)}}, 0, 0});
  VersionEdit edit;
  edit.base = 1;
  edit.removed.emplace_back(1, "a");
  CHECK(set.Prepare(edit).status().code() == Status::Code::kInvalidArgument);
  CHECK(set.current()->number == 1);
}

TEST_CASE("deeper levels stay sorted, and a merge drops emptied bottom levels but keeps L0",
          "[lsm][version]") {
  VersionSet set;
  set.Recover(Version{1, {{}, {Ref("x", 50, 60)}, {Ref("y", 0, 100)}}, 0, 0});
  VersionEdit edit;
  edit.base = 1;
  edit.removed.emplace_back(2, "y");
  edit.added[1] = {Ref("p", 0, 10), Ref("q", 70, 80)};
  edit.drop_empty_tail = true;
  REQUIRE(Apply(set, edit).ok());
  const Levels& levels = set.current()->levels;
  REQUIRE(levels.size() == 2);
  CHECK(levels[0].empty());
  CHECK(Keys(levels[1]) == std::vector<std::string>{"p", "x", "q"});

  VersionEdit flush;  // naming L0 with no files still makes an L0 of an empty map
  VersionSet empty;
  empty.Recover(Version{1, {}, 0, 0});
  flush.base = 1;
  flush.added[0] = {};
  REQUIRE(Apply(empty, flush).ok());
  CHECK(empty.current()->levels.size() == 1);
}

}  // namespace
}  // namespace portal::lsm
