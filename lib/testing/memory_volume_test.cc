#include "testing/memory_volume.h"

#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <thread>

#include "testing/block_device_model.h"

namespace portal::testing {
namespace {

using device::StatusExtent;

TEST_CASE("MemoryVolume matches a byte-array model", "[volume][property]") {
  rc::prop("random command sequences", [] {
    const uint64_t size = *rc::gen::element<uint64_t>(64 * 1024, 64 * 1024 + 4096, 12288);
    RunBlockDeviceModel(size, InlineDevice(std::make_shared<MemoryVolume>(size, 4096)));
  });
}

TEST_CASE("MemoryVolume: 1 EiB costs nothing until written, huge trims are O(1)", "[volume]") {
  const uint64_t eib = uint64_t{1} << 60;
  auto v = std::make_shared<MemoryVolume>(eib, 4096);
  auto dut = InlineDevice(v);
  std::vector<uint8_t> data(8192, 0x5a);
  REQUIRE(dut.run(v->Write(eib - 8192, data, {})).ok());
  REQUIRE(dut.run(v->Write(0, data, {})).ok());
  CHECK(v->data_blocks() == 4);
  REQUIRE(dut.run(v->Trim(100, eib - 200, {})).ok());
  CHECK(v->data_blocks() == 0 + 2);  // the partial edge blocks keep their outer bytes
  CHECK(v->extent_count() <= 3);
  std::vector<uint8_t> out(8192);
  REQUIRE(dut.run(v->Read(eib - 8192, out, nullptr)).ok());
  for (size_t i = 0; i < out.size(); ++i) {
    INFO(i);
    REQUIRE(out[i] == (i >= 8192 - 100 ? 0x5a : 0));
  }
  auto st = dut.run_status(v->BlockStatus(0, uint64_t{1} << 32, 1000));
  REQUIRE(st.ok());
  REQUIRE(st->size() == 2);
  CHECK((*st)[0] == StatusExtent{4096, false, false});
  CHECK((*st)[1] == StatusExtent{(uint64_t{1} << 32) - 4096, true, true});
}

TEST_CASE("MemoryVolume: concurrent sub-block writes to one block are all kept", "[volume]") {
  auto v = std::make_shared<MemoryVolume>(1 << 20, 4096);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto dut = InlineDevice(v);
      for (int i = 0; i < 512; ++i) {
        uint8_t byte = static_cast<uint8_t>(t + 1);
        uint64_t off = static_cast<uint64_t>(i * 8 + t);
        REQUIRE(dut.run(v->Write(off, {&byte, 1}, {})).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<uint8_t> out(4096);
  REQUIRE(InlineDevice(v).run(v->Read(0, out, nullptr)).ok());
  for (int i = 0; i < 4096; ++i) REQUIRE(out[i] == (i % 8) + 1);
}

}  // namespace
}  // namespace portal::testing
