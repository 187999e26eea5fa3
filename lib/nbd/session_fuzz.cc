// libFuzzer target: cmake -DCMAKE_CXX_COMPILER=clang++ -DPORTAL_FUZZ=ON, then
//   ./session_fuzz -max_total_time=60 corpus/
#include "testing/nbd_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  portal::testing::FuzzSessionOnce(data, size);
  return 0;
}
