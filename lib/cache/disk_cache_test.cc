// The disk cache: bounded, kept across restarts, checksummed, never authoritative, and
// off (with one log line) when its disk is full or read-only.
#include "cache/disk_cache.h"

#include <spdlog/sinks/ringbuffer_sink.h>

#include <cctype>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <filesystem>
#include <fstream>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "testing/memory_cache_files.h"
#include "testing/testing.h"
#include "util/checksum.h"
#include "util/log.h"

namespace portal::cache {
namespace {

using testing::MemoryCacheFiles;

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

std::optional<std::string> Get(SimEnv& env, DiskCache& c, const std::string& key,
                               const std::string& want) {
  return RunSim(env, c.Get(key, Checksum64(want), want.size()));
}

void Put(SimEnv& env, DiskCache& c, const std::string& key, const std::string& bytes) {
  c.Put(key, Checksum64(bytes), bytes);
  RunSim(env, c.Drain());
}

// Lines of the portalbd::cache log containing `what`, while alive.
class CacheLog {
 public:
  CacheLog() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    log::Get("portalbd::cache")->sinks().push_back(sink_);
  }
  ~CacheLog() {
    auto& sinks = log::Get("portalbd::cache")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  int Count(const std::string& what) const {
    int n = 0;
    for (const auto& line : sink_->last_formatted()) n += line.find(what) != std::string::npos;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

TEST_CASE("DiskCache returns what was put, only for the checksum it was put with",
          "[cache][disk_cache]") {
  SimEnv env;
  auto disk = std::make_shared<MemoryCacheFiles::Disk>();
  DiskCache c(env, std::make_unique<MemoryCacheFiles>(disk), 1 << 20);
  CHECK_FALSE(Get(env, c, "k", "v").has_value());  // not loaded yet: a miss, no I/O
  RunSim(env, c.Load());
  REQUIRE(c.enabled());
  const std::string a = Bytes(4096, 1);
  Put(env, c, "k", a);
  CHECK(Get(env, c, "k", a) == a);
  // Another writer's bytes under the same key (another epoch's chunk, a store restored
  // from a backup): the caller's checksum is not theirs, so it is never served.
  const std::string b = Bytes(4096, 2);
  CHECK_FALSE(Get(env, c, "k", b).has_value());
  CHECK(c.stats().hits == 1);
}

TEST_CASE("DiskCache stays within its capacity, evicting the least recently used",
          "[cache][disk_cache]") {
  SimEnv env;
  auto disk = std::make_shared<MemoryCacheFiles::Disk>();
  const uint64_t entry = 1000 + 28 + 2;  // payload + header + key ("kN")
  DiskCache c(env, std::make_unique<MemoryCacheFiles>(disk), 5 * entry);
  RunSim(env, c.Load());
  std::vector<std::string> data;
  for (int i = 0; i < 10; ++i) {
    data.push_back(Bytes(1000, char(i)));
    Put(env, c, fmt::format("k{}", i), data.back());
    CHECK(c.stats().usage_bytes <= 5 * entry);
    CHECK(disk->used() <= 5 * entry);
  }
  CHECK(c.stats().entries == 5);
  CHECK(c.stats().evictions == 5);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(Get(env, c, fmt::format("k{}", i), data[i]).has_value());
  REQUIRE(Get(env, c, "k5", data[5]).has_value());  // k5 is now the most recent
  data.push_back(Bytes(1000, 10));
  Put(env, c, "k10", data[10]);
  CHECK(Get(env, c, "k5", data[5]).has_value());
  CHECK_FALSE(Get(env, c, "k6", data[6]).has_value());
  CHECK(disk->used() <= 5 * entry);
}

TEST_CASE("DiskCache keeps its entries across a restart, in a real directory",
          "[cache][disk_cache]") {
  SimEnv env;
  testing::TempDir dir;
  const std::string path = dir.Join("chunks");
  const std::string a = Bytes(65536, 3), b = Bytes(65536, 4);
  {
    DiskCache c(env, DirectoryFiles(path), 1 << 20);
    RunSim(env, c.Load());
    Put(env, c, "a", a);
    Put(env, c, "b", b);
  }
  {
    DiskCache c(env, DirectoryFiles(path), 1 << 20);
    RunSim(env, c.Load());
    CHECK(c.stats().entries == 2);
    CHECK(Get(env, c, "a", a) == a);
    CHECK(Get(env, c, "b", b) == b);
  }
  // A smaller capacity at the next start evicts down to it (the oldest file goes).
  DiskCache smaller(env, DirectoryFiles(path), 70000);
  RunSim(env, smaller.Load());
  CHECK(smaller.stats().entries == 1);
  RunSim(env, smaller.Drain());
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    files += e.path().filename() != "LOCK";
  }
  CHECK(files == 1);
}

TEST_CASE("DiskCache leaves alone the files no entry is named as", "[cache][disk_cache]") {
  // Entries are indexed by the hash their 16-hex-digit name spells: a file named otherwise
  // (left by someone else, or an upper-case name) could never be found: not counted, not
  // read, and not deleted either (they are not the cache's).
  SimEnv env;
  testing::TempDir dir;
  const std::string a = Bytes(4096, 1);
  {
    DiskCache c(env, DirectoryFiles(dir.path()), 1 << 20);
    RunSim(env, c.Load());
    Put(env, c, "a", a);
  }
  const std::string name = fmt::format("{:016x}", Checksum64(std::string("a")));
  std::string upper = name;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const bool has_letter = upper != name;
  for (const char* stray : {"notes.txt", "0123456789abcdef0"}) {
    std::ofstream(dir.Join(stray)) << "x";
  }
  if (has_letter) std::ofstream(dir.Join(upper)) << "x";
  DiskCache c(env, DirectoryFiles(dir.path()), 1 << 20);
  RunSim(env, c.Load());
  RunSim(env, c.Drain());
  CHECK(c.stats().entries == 1);
  CHECK(c.stats().usage_bytes < 4096 + 100);
  CHECK(std::filesystem::exists(dir.Join("notes.txt")));
  CHECK(std::filesystem::exists(dir.Join("0123456789abcdef0")));
  if (has_letter) CHECK(std::filesystem::exists(dir.Join(upper)));
  CHECK(Get(env, c, "a", a) == a);
}

TEST_CASE("DirectoryFiles works in the directory it opened and locked, not in its path",
          "[cache][disk_cache]") {
  // Entries are named relative to the directory Open() opened (one name to look up per
  // read, not the whole path): the directory moved away is still the one read, written
  // and cleaned, and what later appears at the old path is not read or touched.
  testing::TempDir dir;
  const std::string path = dir.Join("chunks"), moved = dir.Join("moved");
  auto files = DirectoryFiles(path);
  REQUIRE(files->Open().ok());
  REQUIRE(files->Write("a", "first").ok());
  std::filesystem::rename(path, moved);
  std::filesystem::create_directories(path);
  std::ofstream(path + "/a") << "impostor";
  auto a = files->Read("a");
  REQUIRE(a.ok());
  CHECK(*a == "first");
  std::string head(2, '\0'), body(3, '\0');
  auto len = files->ReadSplit("a", std::span<uint8_t>(reinterpret_cast<uint8_t*>(head.data()), 2),
                              std::span<uint8_t>(reinterpret_cast<uint8_t*>(body.data()), 3));
  REQUIRE(len.ok());
  CHECK(*len == 5);
  CHECK(head + body == "first");
  REQUIRE(files->Write("b", "second").ok());
  CHECK(std::filesystem::exists(moved + "/b"));
  CHECK_FALSE(std::filesystem::exists(path + "/b"));
  REQUIRE(files->Remove("a").ok());
  CHECK_FALSE(std::filesystem::exists(moved + "/a"));
  CHECK(std::filesystem::exists(path + "/a"));
}

TEST_CASE("DiskCache drops a damaged entry, never serves it, and takes it again",
          "[cache][disk_cache]") {
  SimEnv env;
  testing::TempDir dir;
  DiskCache c(env, DirectoryFiles(dir.path()), 1 << 20);
  RunSim(env, c.Load());
  const std::string a = Bytes(8192, 5);
  Put(env, c, "a", a);
  std::string file;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    if (e.path().filename() != "LOCK") file = e.path();
  }
  REQUIRE(!file.empty());
  SECTION("a flipped bit in the payload") {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x10;
    f.seekp(5000);
    f.write(&ch, 1);
  }
  SECTION("a torn (short) file") { std::filesystem::resize_file(file, 4000); }
  CHECK_FALSE(Get(env, c, "a", a).has_value());
  CHECK(c.stats().damaged == 1);
  RunSim(env, c.Drain());
  CHECK_FALSE(std::filesystem::exists(file));
  Put(env, c, "a", a);  // fetched again, kept again
  CHECK(Get(env, c, "a", a) == a);
}

TEST_CASE("DiskCache::GetMany reads a run of entries in one job, each verified on its own",
          "[cache][disk_cache]") {
  SimEnv env;
  testing::TempDir dir;
  DiskCache c(env, DirectoryFiles(dir.path()), 1 << 20);
  RunSim(env, c.Load());
  // Sizes that grow, shrink and grow again: the files are read through one buffer.
  const std::vector<std::string> bytes = {Bytes(8192, 1), Bytes(65536, 2), Bytes(4096, 3),
                                          Bytes(65536, 4), Bytes(12288, 5)};
  for (size_t i = 0; i < bytes.size(); ++i) Put(env, c, fmt::format("k{}", i), bytes[i]);
  // A flipped bit in k3's file (the last byte of its payload).
  const std::string k3 = dir.Join(fmt::format("{:016x}", Checksum64(std::string("k3"))));
  REQUIRE(std::filesystem::exists(k3));
  {
    std::fstream f(k3, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x01;
    f.seekp(-1, std::ios::end);
    f.write(&ch, 1);
  }
  std::vector<DiskCache::GetItem> items;
  for (size_t i = 0; i < bytes.size(); ++i) {
    items.push_back({fmt::format("k{}", i), Checksum64(bytes[i]), bytes[i].size()});
  }
  items.insert(items.begin() + 2, DiskCache::GetItem{"absent", 1, 4096});
  // k4 asked for with another writer's checksum: a miss, never its bytes.
  items.push_back({"k4", Checksum64(bytes[3]), bytes[4].size()});
  auto got = RunSim(env, c.GetMany(items));
  REQUIRE(got.size() == 7);
  CHECK(got[0] == bytes[0]);
  CHECK(got[1] == bytes[1]);
  CHECK_FALSE(got[2].has_value());
  CHECK(got[3] == bytes[2]);
  CHECK_FALSE(got[4].has_value());  // k3, damaged
  CHECK(got[5] == bytes[4]);
  CHECK_FALSE(got[6].has_value());
  CHECK(c.stats().hits == 4);
  CHECK(c.stats().damaged == 2);  // k3, and k4's entry under the wrong checksum
  RunSim(env, c.Drain());
  CHECK_FALSE(std::filesystem::exists(k3));
  // k4 was dropped as the wrong bytes for that request; k0 stays.
  CHECK(Get(env, c, "k0", bytes[0]) == bytes[0]);
}

TEST_CASE("DiskCache::ReadMany reads entries straight into the caller's memory, verified there",
          "[cache][disk_cache]") {
  SimEnv env;
  testing::TempDir dir;
  DiskCache c(env, DirectoryFiles(dir.path()), 1 << 20);
  RunSim(env, c.Load());
  const std::vector<std::string> bytes = {Bytes(8192, 1), Bytes(65536, 2), Bytes(4096, 3),
                                          Bytes(65536, 4), Bytes(12288, 5), Bytes(4096, 6)};
  for (size_t i = 0; i < bytes.size(); ++i) Put(env, c, fmt::format("k{}", i), bytes[i]);
  auto file = [&](int i) {
    return dir.Join(fmt::format("{:016x}", Checksum64(fmt::format("k{}", i))));
  };
  {  // k1: a flipped bit in the payload's first byte; k4: one byte too many; k5: torn
    std::fstream f(file(1), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-65536, std::ios::end);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x40;
    f.seekp(-65536, std::ios::end);
    f.write(&ch, 1);
  }
  std::ofstream(file(4), std::ios::app | std::ios::binary) << 'x';
  std::filesystem::resize_file(file(5), std::filesystem::file_size(file(5)) - 1);
  CHECK(c.Contains("k0"));
  CHECK_FALSE(c.Contains("absent"));
  std::string dest(8192 + 65536 + 4096 + 65536 + 12288 + 4096 + 4096 + 65536, '\0');
  std::vector<DiskCache::ReadItem> items;
  std::vector<size_t> at;
  size_t off = 0;
  auto add = [&](std::string key, uint64_t sum, uint64_t size) {
    at.push_back(off);
    items.push_back({std::move(key), sum, size, reinterpret_cast<uint8_t*>(dest.data()) + off});
    off += size;
  };
  for (size_t i = 0; i < bytes.size(); ++i) {
    add(fmt::format("k{}", i), Checksum64(bytes[i]), bytes[i].size());
  }
  add("absent", 1, 4096);
  // k3 asked for with another writer's checksum: a miss, never its bytes.
  add("k3", Checksum64(bytes[1]), 65536);
  const std::vector<bool> hit = RunSim(env, c.ReadMany(items));
  REQUIRE(hit.size() == 8);
  CHECK(hit == std::vector<bool>{true, false, true, true, false, false, false, false});
  for (size_t i : {0, 2, 3}) CHECK(dest.substr(at[i], bytes[i].size()) == bytes[i]);
  CHECK(c.stats().hits == 3);
  CHECK(c.stats().damaged == 4);  // k1, k4, k5, and k3's entry under the wrong checksum
  RunSim(env, c.Drain());
  for (int i : {1, 3, 4, 5}) CHECK_FALSE(std::filesystem::exists(file(i)));
  CHECK_FALSE(c.Contains("k1"));
  CHECK(c.Contains("k0"));
}

TEST_CASE("DiskCache checks the payload itself, not only the checksum its header claims",
          "[cache][disk_cache]") {
  SimEnv env;
  auto disk = std::make_shared<MemoryCacheFiles::Disk>();
  DiskCache c(env, std::make_unique<MemoryCacheFiles>(disk), 1 << 20);
  RunSim(env, c.Load());
  const std::string a = Bytes(4096, 6);
  Put(env, c, "a", a);
  // One flipped bit in the payload: header, key and length all still match.
  disk->on_read = [](const std::string&, std::string* bytes) { (*bytes)[bytes->size() - 7] ^= 4; };
  SECTION("Get") { CHECK_FALSE(Get(env, c, "a", a).has_value()); }
  SECTION("ReadMany, into the caller's memory") {
    std::string dest(a.size(), '\0');
    std::vector<DiskCache::ReadItem> items;
    items.push_back({"a", Checksum64(a), a.size(), reinterpret_cast<uint8_t*>(dest.data())});
    CHECK(RunSim(env, c.ReadMany(items)) == std::vector<bool>{false});
  }
  CHECK(c.stats().damaged == 1);
  CHECK(c.stats().entries == 0);
}

TEST_CASE("DiskCache turns itself off with one log line when its disk is full or read-only",
          "[cache][disk_cache]") {
  SimEnv env;
  CacheLog log;
  auto disk = std::make_shared<MemoryCacheFiles::Disk>();
  SECTION("full") { disk->disk_bytes = 3 * 4200; }
  SECTION("read-only") { disk->read_only = true; }
  DiskCache c(env, std::make_unique<MemoryCacheFiles>(disk), 1 << 20);
  RunSim(env, c.Load());
  std::vector<std::string> data;
  for (int i = 0; i < 10; ++i) {
    data.push_back(Bytes(4096, char(i)));
    Put(env, c, fmt::format("k{}", i), data.back());
  }
  CHECK_FALSE(c.enabled());
  CHECK(log.Count("disk cache off") == 1);
  const uint64_t reads = disk->reads;
  CHECK_FALSE(Get(env, c, "k0", data[0]).has_value());  // off: no more disk I/O
  CHECK(disk->reads == reads);
  CHECK(disk->writes <= 3);
}

TEST_CASE("DiskCache is off when its directory cannot be used or is in use",
          "[cache][disk_cache]") {
  SimEnv env;
  CacheLog log;
  testing::TempDir dir;
  SECTION("a file where the directory should be") {
    std::ofstream(dir.Join("file")) << "x";
    DiskCache c(env, DirectoryFiles(dir.Join("file")), 1 << 20);
    RunSim(env, c.Load());
    CHECK_FALSE(c.enabled());
  }
  SECTION("another portalbd holds it") {
    DiskCache first(env, DirectoryFiles(dir.path()), 1 << 20);
    RunSim(env, first.Load());
    CHECK(first.enabled());
    DiskCache second(env, DirectoryFiles(dir.path()), 1 << 20);
    RunSim(env, second.Load());
    CHECK_FALSE(second.enabled());
  }
  CHECK(log.Count("disk cache off") == 1);
}

}  // namespace
}  // namespace portal::cache
