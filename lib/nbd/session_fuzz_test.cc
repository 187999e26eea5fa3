// Runs the fuzz harness on random inputs in the regular test binary, so CI exercises it
// without clang. Long campaigns use the libFuzzer target (session_fuzz.cc).
#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "nbd/protocol.h"
#include "testing/nbd_fuzz.h"

namespace portal::nbd {
namespace {

TEST_CASE("session survives arbitrary client bytes", "[nbd][fuzz]") {
  rc::prop("random bytes after a valid or no negotiation", [] {
    auto bytes = *rc::gen::container<std::string>(rc::gen::arbitrary<char>());
    testing::FuzzSessionOnce(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  });
}

TEST_CASE("session survives random well-formed requests with random fields", "[nbd][fuzz]") {
  rc::prop("random request headers", [] {
    std::string in = "\x03\x05";  // negotiate with structured replies, chunks of 186
    auto n = *rc::gen::inRange(1, 40);
    for (int i = 0; i < n; ++i) {
      auto type = *rc::gen::inRange<uint16_t>(0, 10);
      auto flags = *rc::gen::inRange<uint16_t>(0, 64);
      auto offset = *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 1 << 21),
                                    rc::gen::arbitrary<uint64_t>());
      auto length = *rc::gen::oneOf(rc::gen::inRange<uint32_t>(0, 10000),
                                    rc::gen::arbitrary<uint32_t>());
      if (type == NBD_CMD_WRITE) length %= 5000;
      in += testing::Request(type, i, offset, length, flags);
      if (type == NBD_CMD_WRITE) in += std::string(length, 'x');
    }
    testing::FuzzSessionOnce(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  });
}

}  // namespace
}  // namespace portal::nbd
