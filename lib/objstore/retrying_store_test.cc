#include "objstore/retrying_store.h"

#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"

namespace portal::objstore {
namespace {

// A fetch that answers with `script[i]` on its i-th call (the last one from then on).
struct Scripted {
  std::vector<Status> script;
  uint32_t calls = 0;
  std::function<Task<Status>()> fetch() {
    return [this]() -> Task<Status> {
      Status s = script[std::min<size_t>(calls, script.size() - 1)];
      ++calls;
      co_return s;
    };
  }
};

TEST_CASE("RefetchCorrupt: a body that fails verification is fetched again and counted",
          "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  Scripted f{{Status::Corruption("seg/1: chunk 0 fails its checksum"), Status::Ok()}};
  CHECK(RunSim(env, RefetchCorrupt(f.fetch(), &refetches)).ok());
  CHECK(f.calls == 2);
  CHECK(refetches == 1);
}

TEST_CASE("RefetchCorrupt: damage that persists fails after a bounded number of fetches",
          "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  Scripted f{{Status::Corruption("seg/1: chunk 0 fails its checksum")}};
  Status s = RunSim(env, RefetchCorrupt(f.fetch(), &refetches));
  CHECK(s.IsCorruption());
  CHECK(s.message() == "failed verification 3 times: seg/1: chunk 0 fails its checksum");
  CHECK(f.calls == kVerifiedReadAttempts);
  CHECK(refetches == kVerifiedReadAttempts - 1);
  Scripted once{{Status::Corruption("x")}};
  CHECK(RunSim(env, RefetchCorrupt(once.fetch(), nullptr, 1)).IsCorruption());
  CHECK(once.calls == 1);
}

TEST_CASE("RefetchCorrupt: other errors come back at once", "[objstore][retry]") {
  SimEnv env;
  std::atomic<uint64_t> refetches{0};
  for (const Status& first : {Status::NotFound("seg/1"), Status::Unavailable("503"),
                              Status::IOError("disk"), Status::Ok()}) {
    Scripted f{{first, Status::Ok()}};
    CHECK(RunSim(env, RefetchCorrupt(f.fetch(), &refetches)) == first);
    CHECK(f.calls == 1);
  }
  CHECK(refetches == 0);
}

}  // namespace
}  // namespace portal::objstore
