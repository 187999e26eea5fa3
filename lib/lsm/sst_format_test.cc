#include "lsm/sst_format.h"

#include <catch2/catch.hpp>

namespace portal::lsm {
namespace {

std::vector<Extent> Sample(size_t n) {
  std::vector<Extent> v;
  uint64_t pos = 5;
  for (size_t i = 0; i < n; ++i) {
    uint64_t len = 1 + i % 7;
    Loc loc = (i % 5 == 0) ? Loc::Hole() : (i % 7 == 0) ? Loc::Zero() : Loc::Data(100 + i % 3, i * 3);
    v.push_back({pos, pos + len, loc});
    pos += len + (i % 4 == 0 ? 10 : 0);
  }
  return v;
}

std::vector<Extent> ReadAll(const std::string& sst, const std::string& name) {
  auto idx = DecodeSstIndex(sst, sst.size(), name);
  REQUIRE(idx.ok());
  std::vector<Extent> out;
  for (const auto& b : idx->blocks) {
    auto ex = DecodeSstBlock(std::string_view(sst).substr(b.offset, b.length), b, name);
    REQUIRE(ex.ok());
    out.insert(out.end(), ex->begin(), ex->end());
  }
  return out;
}

TEST_CASE("SSTs round-trip with index and segment summary", "[lsm][format]") {
  for (size_t n : {1, 10, 5000}) {
    SstBuilder b(512);
    auto in = Sample(n);
    for (const auto& e : in) b.Add(e);
    SstIndex built;
    std::string sst = b.Finish(&built);
    auto idx = DecodeSstIndex(sst, sst.size(), "t");
    REQUIRE(idx.ok());
    CHECK(idx->min_block == in.front().first);
    CHECK(idx->end_block == in.back().end);
    CHECK(idx->extent_count == n);
    CHECK(idx->segment_blocks == built.segment_blocks);
    CHECK(idx->blocks.size() == built.blocks.size());
    uint64_t data = 0;
    for (const auto& e : in) data += e.loc.is_data() ? e.length() : 0;
    CHECK(idx->data_blocks == data);
    CHECK(ReadAll(sst, "t") == in);
  }
}

TEST_CASE("every corrupted byte of an SST is reported as Corruption", "[lsm][format]") {
  SstBuilder b(256);
  for (const auto& e : Sample(200)) b.Add(e);
  std::string sst = b.Finish(nullptr);
  for (size_t i = 0; i < sst.size(); ++i) {
    std::string bad = sst;
    bad[i] ^= 0x10;
    auto idx = DecodeSstIndex(bad, bad.size(), "map/x");
    if (!idx.ok()) {
      CHECK(idx.status().IsCorruption());
      continue;
    }
    bool caught = false;
    for (const auto& e : idx->blocks) {
      auto ex = DecodeSstBlock(std::string_view(bad).substr(e.offset, e.length), e, "map/x");
      if (!ex.ok()) caught = true;
    }
    INFO("byte " << i);
    CHECK(caught);
  }
}

}  // namespace
}  // namespace portal::lsm
