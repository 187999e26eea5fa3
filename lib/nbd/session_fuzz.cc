// libFuzzer target nbd_session (fuzz/README.md): the server's NBD codecs, handshake and
// transmission, fed by a hostile client through nbd::Session (testing/nbd_fuzz.h).
//
// Input: mode u8 (bit 0: a valid negotiation first, bit 1: with structured replies and
// base:allocation, bit 2: read-only, bit 3: a larger input buffer), piece u8, then the
// client's bytes.
#include "testing/nbd_fuzz.h"
#include "util/log.h"

// The session logs a warning for each client it closes on: a line for most inputs.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  portal::log::Init("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  portal::testing::FuzzSessionOnce(data, size);
  return 0;
}
