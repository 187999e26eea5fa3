#include "volume/manifest.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "testing/testing.h"

namespace portal::volume {
namespace {

using nlohmann::json;

// Written by EncodeManifest as of 0e050f1, which always wrote "segtab": "" (the segment
// table objects it was meant to name were never written). Stores hold such manifests.
constexpr const char* kWithEmptySegtab =
    R"({"applied_segment":107,"applied_seq":99120,"block_size":4096,"checksum":"a625635ae61bbc8c",)"
    R"("epoch":7,"epoch_manifest":40,"format_version":2,"levels":[[{"data_blocks":9000,"end":262144,)"
    R"("extents":1200,"key":"map/0000000007-0000000003.sst","min":0,"size":40960}],[{"data_blocks":)"
    R"(200000,"end":262144,"extents":30000,"key":"map/0000000006-0000000011.sst","min":0,"size":)"
    R"(1048576}]],"next_segment_id":108,"next_seq":99121,"segtab":"","size_bytes":1073741824,)"
    R"("snapshots":[{"created":"2026-01-07T03:04:43.123456Z","created_ns":1767755083123456789,"id":)"
    R"("3974b09e-5c0d-42dc-8305-ae77837ee282","key":"snap/3974b09e-5c0d-42dc-8305-ae77837ee282.json",)"
    R"("name":"before"}],"volume_uuid":"2ccc7785-eaed-47f3-9f78-fb6290cae6a2"})";
// The same encoder with a segment table key set (never happened in a store; a decoder must
// still take any string there).
constexpr const char* kWithSegtabKey =
    R"({"applied_segment":107,"applied_seq":99120,"block_size":4096,"checksum":"b27e112bef5f7ce0",)"
    R"("epoch":7,"epoch_manifest":40,"format_version":2,"levels":[],"next_segment_id":108,)"
    R"("next_seq":99121,"segtab":"segtab/0000000007-0000000002.json","size_bytes":1073741824,)"
    R"("snapshots":[],"volume_uuid":"2ccc7785-eaed-47f3-9f78-fb6290cae6a2"})";
// tests/fixtures/store-v1 (format 1: no checksum).
constexpr const char* kFormat1 =
    R"({"applied_segment":7,"applied_seq":6,"block_size":4096,"epoch":1,"epoch_manifest":1,)"
    R"("format_version":1,"levels":[[{"data_blocks":768,"end":768,"extents":6,"key":)"
    R"("map/0000000001-0000000001.sst","min":0,"size":96}]],"next_segment_id":8,"next_seq":7,)"
    R"("segtab":"","size_bytes":1073741824,"snapshots":[],"volume_uuid":)"
    R"("2ccc7785-eaed-47f3-9f78-fb6290cae6a2"})";

Manifest Example() {
  Manifest m;
  m.volume_uuid = "2ccc7785-eaed-47f3-9f78-fb6290cae6a2";
  m.size_bytes = 1073741824;
  m.block_size = 4096;
  m.epoch = 7;
  m.epoch_manifest = 40;
  m.next_segment_id = 108;
  m.next_seq = 99121;
  m.applied_segment = 107;
  m.applied_seq = 99120;
  m.levels = {{SstRef{"map/0000000007-0000000003.sst", 0, 262144, 40960, 1200, 9000}},
              {SstRef{"map/0000000006-0000000011.sst", 0, 262144, 1048576, 30000, 200000}}};
  m.snapshots = {SnapshotRef{"before", "3974b09e-5c0d-42dc-8305-ae77837ee282", 1767755083123456789,
                             "snap/3974b09e-5c0d-42dc-8305-ae77837ee282.json"}};
  return m;
}

TEST_CASE("manifests written with a \"segtab\" field still decode and verify",
          "[volume][manifest]") {
  auto m = DecodeManifest(kWithEmptySegtab, "manifest/40");
  REQUIRE(m.ok());
  CHECK(*m == Example());
  // The checksum covers the legacy field like any other: it is verified, not skipped.
  std::string flipped = kWithEmptySegtab;
  flipped.replace(flipped.find(R"("segtab":"")"), 11, R"("segtab":"x")");
  auto bad = DecodeManifest(flipped, "manifest/40");
  REQUIRE(!bad.ok());
  CHECK(bad.status().ToString().find("checksum mismatch") != std::string::npos);

  auto keyed = DecodeManifest(kWithSegtabKey, "manifest/41");
  REQUIRE(keyed.ok());
  CHECK(keyed->levels.empty());

  auto v1 = DecodeManifest(kFormat1, "manifest/2");
  REQUIRE(v1.ok());
  CHECK(v1->format_version == 1);
  CHECK(v1->applied_segment == 7);
}

TEST_CASE("the encoder writes \"segtab\" as \"\" for older binaries, and what it writes decodes",
          "[volume][manifest]") {
  const std::string text = EncodeManifest(Example());
  const json j = json::parse(text);
  CHECK(j.at("segtab") == "");  // 0e050f1's decoder refuses a manifest without it
  CHECK(j.at("format_version") == kManifestFormatVersion);
  auto m = DecodeManifest(text, "manifest/40");
  REQUIRE(m.ok());
  CHECK(*m == Example());
}

// The ```json block of docs/volume.md's "Manifest" section, comments and all.
std::string DocsManifestExample() {
  const std::string doc = testing::ReadFile(testing::SourceDir() + "/docs/volume.md");
  const size_t section = doc.find("\n## Manifest");
  if (section == std::string::npos) return "";
  const size_t open = doc.find("```json\n", section);
  if (open == std::string::npos) return "";
  const size_t begin = open + 8;
  const size_t close = doc.find("\n```", begin);
  if (close == std::string::npos) return "";
  return doc.substr(begin, close - begin);
}

TEST_CASE("the manifest example in docs/volume.md is what the encoder writes, and decodes",
          "[volume][manifest]") {
  const std::string example = DocsManifestExample();
  REQUIRE(!example.empty());
  const json j = json::parse(example, nullptr, /*allow_exceptions=*/false,
                             /*ignore_comments=*/true);
  REQUIRE(!j.is_discarded());
  auto m = DecodeManifest(j.dump(), "docs/volume.md");
  INFO(m.status().ToString());
  REQUIRE(m.ok());
  // Every field the encoder writes, with the checksum it computes: the docs show no field
  // the code lacks and lack none it writes.
  CHECK(json::parse(EncodeManifest(*m)) == j);
}

TEST_CASE("upload_window: absent reads as 1, written only above 1, out of range is Corruption",
          "[volume][manifest]") {
  auto old = DecodeManifest(kWithEmptySegtab, "old");
  REQUIRE(old.ok());
  CHECK(old->upload_window == 1);
  Manifest m = Example();
  CHECK(EncodeManifest(m).find("upload_window") == std::string::npos);  // bytes as before
  m.upload_window = 8;
  auto back = DecodeManifest(EncodeManifest(m), "m");
  REQUIRE(back.ok());
  CHECK(back->upload_window == 8);
  m.upload_window = kMaxUploadWindow + 1;
  CHECK(DecodeManifest(EncodeManifest(m), "m").status().IsCorruption());
}

}  // namespace
}  // namespace portal::volume
