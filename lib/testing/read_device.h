// For Catch2 tests: reads `n` bytes at `off` from a device on the simulated Env, failing
// the test case on an error.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "device/block_device.h"
#include "env/block_on.h"
#include "env/sim_env.h"

namespace portal::testing {

inline std::vector<uint8_t> ReadDevice(SimEnv& env, device::BlockDevice& dev, uint64_t off,
                                       size_t n) {
  std::vector<uint8_t> out(n);
  auto st = RunSim(env, dev.Read(off, out, nullptr));
  if (!st.ok()) FAIL("read failed: " << st.ToString());
  return out;
}

}  // namespace portal::testing
