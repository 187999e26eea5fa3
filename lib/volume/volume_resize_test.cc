#include <catch2/catch.hpp>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "objstore/memory_store.h"
#include "testing/read_device.h"
#include "testing/volume_options.h"
#include "volume/lsm_volume.h"

namespace portal::volume {
namespace {

std::shared_ptr<LsmVolume> Open(SimEnv& env, objstore::ObjectStore& store, uint64_t size) {
  VolumeOptions o = testing::SmallVolumeOptions(size);
  o.size_bytes = size;
  auto v = RunSim(env, LsmVolume::Open(env, store, o));
  if (!v.ok()) FAIL("open failed: " << v.status().ToString());
  return *v;
}

TEST_CASE("resize: grow commits the size, survives reopen, new blocks read zero",
          "[volume][resize]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, 1 << 20);
  std::vector<uint8_t> data(4096, 0xab);
  REQUIRE(RunSim(env, v->Write((1 << 20) - 4096, data, {})).ok());
  REQUIRE(RunSim(env, v->Resize(4 << 20, false)).ok());
  CHECK(v->size_bytes() == (4u << 20));
  CHECK(v->stats().size_bytes == (4u << 20));
  CHECK(testing::ReadDevice(env, *v, (1 << 20) - 4096, 4096) == data);
  CHECK(testing::ReadDevice(env, *v, 3 << 20, 4096) == std::vector<uint8_t>(4096, 0));
  REQUIRE(RunSim(env, v->Write(3 << 20, data, {})).ok());
  REQUIRE(RunSim(env, v->Close()).ok());

  auto again = Open(env, store, 0);  // 0: keep the volume's own size
  CHECK(again->size_bytes() == (4u << 20));
  CHECK(testing::ReadDevice(env, *again, 3 << 20, 4096) == data);
  REQUIRE(RunSim(env, again->Close()).ok());
}

TEST_CASE("resize: shrink only when asked, and the cut-off tail never comes back",
          "[volume][resize]") {
  SimEnv env;
  objstore::MemoryStore store;
  auto v = Open(env, store, 4 << 20);
  std::vector<uint8_t> data(8192, 0x5a);
  REQUIRE(RunSim(env, v->Write(3 << 20, data, {})).ok());
  Status refused = RunSim(env, v->Resize(1 << 20, false));
  CHECK(refused.code() == Status::Code::kInvalidArgument);
  CHECK(v->size_bytes() == (4u << 20));
  CHECK(RunSim(env, v->Resize(1000, true)).code() == Status::Code::kInvalidArgument);
  CHECK(RunSim(env, v->Resize(0, true)).code() == Status::Code::kInvalidArgument);

  REQUIRE(RunSim(env, v->Resize(1 << 20, true)).ok());
  CHECK(v->size_bytes() == (1u << 20));
  REQUIRE(RunSim(env, v->Close()).ok());
  auto again = Open(env, store, 0);
  CHECK(again->size_bytes() == (1u << 20));
  REQUIRE(RunSim(env, again->Resize(4 << 20, false)).ok());
  CHECK(testing::ReadDevice(env, *again, 3 << 20, 8192) == std::vector<uint8_t>(8192, 0));
  REQUIRE(RunSim(env, again->Close()).ok());
}

}  // namespace
}  // namespace portal::volume
