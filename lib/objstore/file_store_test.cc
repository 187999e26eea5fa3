// file:// beyond the conformance suite: arbitrary binary keys, crashes in the middle of a
// write, conditional creates racing between processes, foreign files.
#include "objstore/file_store.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "testing/testing.h"

namespace portal::objstore {
namespace {

std::vector<std::string> Keys(const Result<std::vector<ObjectInfo>>& r) {
  REQUIRE(r.ok());
  std::vector<std::string> out;
  for (const auto& i : *r) out.push_back(i.key);
  return out;
}

// Files under `dir` whose name starts with ".tmp-".
int CountTempFiles(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().starts_with(".tmp-")) ++n;
  }
  return n;
}

TEST_CASE("file store: keys with any byte, '..', '.' and empty segments list back exactly",
          "[objstore][file]") {
  testing::TempDir dir;
  std::string root = dir.Join("root");
  std::filesystem::create_directory(root);
  SimEnv env;
  FileStore s(env, root);
  std::vector<std::string> keys = {"..",
                                   ".",
                                   "../..",
                                   "../x",
                                   "a/../b",
                                   "a//b",
                                   "/lead",
                                   "trail/",
                                   "//",
                                   ".tmp-looks-temporary",
                                   "a~",
                                   "a+",
                                   "%",
                                   "%%",
                                   "a",
                                   "a/b",
                                   std::string("nul\0byte", 8),
                                   std::string(1024, '\xff'),
                                   std::string(500, '/') + std::string(524, '.')};
  for (int b = 1; b < 256; ++b) keys.push_back(std::string(1, static_cast<char>(b)));
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO(i);
    REQUIRE(RunSim(env, s.Put(keys[i], fmt::format("value {}", i))).ok());
  }
  CHECK(Keys(RunSim(env, s.List(""))) == keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO(i);
    CHECK(*RunSim(env, s.Get(keys[i])) == fmt::format("value {}", i));
  }
  // Nothing escaped the store's directory: ".." keys live inside it, no name is hidden.
  int outside = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    outside += e.path().filename() != "root";
  }
  CHECK(outside == 0);
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    INFO(e.path());
    CHECK(e.path().filename().string()[0] != '.');
  }
  CHECK(Keys(RunSim(env, s.List("a/"))) == std::vector<std::string>{"a/../b", "a//b", "a/b"});
  for (const auto& k : keys) REQUIRE(RunSim(env, s.Delete(k)).ok());
  CHECK(RunSim(env, s.List("")).value().empty());
}

TEST_CASE("file store: a write abandoned at any step leaves the old or the new object",
          "[objstore][file]") {
  testing::TempDir dir;
  SimEnv env;
  for (auto step : {FileStore::WriteStep::kTempPartial, FileStore::WriteStep::kTempSynced,
                    FileStore::WriteStep::kPublished}) {
    INFO(static_cast<int>(step));
    std::string fresh = fmt::format("fresh/{}", static_cast<int>(step));
    std::string old = fmt::format("old/{}", static_cast<int>(step));
    FileStore plain(env, dir.path());
    REQUIRE(RunSim(env, plain.Put(old, "old contents")).ok());

    FileStore::Options o;
    o.crash_hook = [step](FileStore::WriteStep at, std::string_view) { return at == step; };
    FileStore crashing(env, dir.path(), o);
    std::string big(1 << 20, 'n');
    CHECK(RunSim(env, crashing.Put(fresh, big)).code() == Status::Code::kShutdown);
    CHECK(RunSim(env, crashing.Put(old, big)).code() == Status::Code::kShutdown);

    bool published = step == FileStore::WriteStep::kPublished;
    auto got_fresh = RunSim(env, plain.Get(fresh));
    auto got_old = RunSim(env, plain.Get(old));
    if (published) {
      CHECK(*got_fresh == big);
      CHECK(*got_old == big);
    } else {
      CHECK(got_fresh.status().IsNotFound());
      CHECK(*got_old == "old contents");
      CHECK(Keys(RunSim(env, plain.List("fresh/"))).empty());
    }
    // The same crash through PutIfAbsent.
    std::string once = fmt::format("once/{}", static_cast<int>(step));
    CHECK(RunSim(env, crashing.PutIfAbsent(once, big)).code() == Status::Code::kShutdown);
    CHECK(RunSim(env, plain.Get(once)).ok() == published);
  }
  // The abandoned temp files are really there, and List never shows them.
  CHECK(CountTempFiles(dir.path()) >= 4);
  auto all = Keys(RunSim(env, FileStore(env, dir.path()).List("")));
  for (const auto& k : all) CHECK(k.find(".tmp") == std::string::npos);
}

TEST_CASE("file store: PutIfAbsent racing between 8 processes has exactly one winner",
          "[objstore][file]") {
  testing::TempDir dir;
  constexpr int kProcs = 8;
  for (int round = 0; round < 10; ++round) {
    std::string key = fmt::format("fence/{}", round);
    int go[2];
    REQUIRE(::pipe(go) == 0);
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
      pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        // The child: no threads exist (this test starts none), so it may allocate.
        ::close(go[1]);
        char c;
        if (::read(go[0], &c, 1) != 1) ::_exit(3);
        SimEnv env(SimEnv::Options{.seed = static_cast<uint64_t>(p + 1)});
        FileStore s(env, dir.path());
        Status st = RunSim(env, s.PutIfAbsent(key, fmt::format("process {}", p)));
        ::_exit(st.ok() ? 0 : st.IsPreconditionFailed() ? 1 : 2);
      }
      pids.push_back(pid);
    }
    ::close(go[0]);
    // One byte per child releases them all at once.
    REQUIRE(::write(go[1], "GGGGGGGG", kProcs) == kProcs);
    ::close(go[1]);
    int winners = 0, losers = 0;
    for (pid_t pid : pids) {
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      REQUIRE(WIFEXITED(status));
      winners += WEXITSTATUS(status) == 0;
      losers += WEXITSTATUS(status) == 1;
    }
    CHECK(winners == 1);
    CHECK(losers == kProcs - 1);
  }
}

TEST_CASE("file store: foreign files in the directory are ignored", "[objstore][file]") {
  testing::TempDir dir;
  SimEnv env;
  FileStore s(env, dir.path());
  REQUIRE(RunSim(env, s.Put("seg/1", "x")).ok());
  for (const char* name : {"has space", "%41", ".hidden", "seg~/%zz", "seg~/.tmp-abc"}) {
    std::ofstream(dir.Join(name)) << "foreign";
  }
  std::filesystem::create_directory(dir.Join("plaindir"));
  std::ofstream(dir.Join("plaindir/file")) << "foreign";
  CHECK(Keys(RunSim(env, s.List(""))) == std::vector<std::string>{"seg/1"});
}

TEST_CASE("file store: CheckAccess says clearly what is wrong", "[objstore][file]") {
  testing::TempDir dir;
  SimEnv env;
  Status missing = RunSim(env, FileStore(env, dir.Join("nope")).CheckAccess());
  CHECK(missing.IsNotFound());
  CHECK(missing.message() == "file://" + dir.Join("nope") + ": directory does not exist");
  std::ofstream(dir.Join("file")) << "x";
  CHECK(RunSim(env, FileStore(env, dir.Join("file")).CheckAccess()).code() ==
        Status::Code::kInvalidArgument);
  CHECK(RunSim(env, FileStore(env, dir.path()).CheckAccess()).ok());
}

}  // namespace
}  // namespace portal::objstore
