// One fuzz iteration over the NBD server session: arbitrary client bytes, split into
// arbitrary chunks, with arbitrary output back-pressure. The session must never crash,
// hang, overrun a bound, or leave a request behind. Used by the libFuzzer target
// (nbd/session_fuzz.cc, -DPORTAL_FUZZ=ON with clang) and by a regular unit test.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "nbd/export.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"

namespace portal::testing {

inline void FuzzSessionOnce(const uint8_t* data, size_t size) {
  if (size < 2) return;
  // Byte 0 picks a prelude so that most inputs reach the transmission phase.
  const uint8_t mode = data[0];
  const size_t chunk = 1 + data[1] % 64 * 37;
  data += 2;
  size -= 2;
  auto device = std::make_shared<testing::MemoryVolume>(1 << 20, 4096);
  nbd::SingleExportCatalog catalog(nbd::ExportInfo{"portalbd", "", 1 << 20, (mode & 4) != 0},
                                   device);
  nbd::Session::Options options;
  options.max_inflight_requests = 4;
  options.max_inflight_bytes = 1 << 20;
  options.input_buffer_bytes = 4096 + (mode & 8) * 1024;
  SessionDriver d(catalog, options);
  std::string input;
  if (mode & 1) {
    input += ClientFlags(nbd::NBD_FLAG_C_FIXED_NEWSTYLE | nbd::NBD_FLAG_C_NO_ZEROES);
    if (mode & 2) {
      input += Option(nbd::NBD_OPT_STRUCTURED_REPLY, "");
      input += Option(nbd::NBD_OPT_SET_META_CONTEXT, MetaData("", {"base:allocation"}));
    }
    input += Option(nbd::NBD_OPT_GO, InfoOrGoData(""));
  }
  input.append(reinterpret_cast<const char*>(data), size);
  size_t fed = 0;
  int idle = 0;
  while (fed < input.size() && idle < 3) {
    d.TakeOutput();
    auto space = d.session().InputSpace();
    if (space.empty()) {
      ++idle;
      continue;
    }
    size_t n = std::min({space.size(), input.size() - fed, chunk});
    std::memcpy(space.data(), input.data() + fed, n);
    d.session().CommitInput(n);
    fed += n;
  }
  d.session().OnInputEof();
  d.TakeOutput();
  PORTAL_ASSERT(d.session().inflight() == 0, "request left in flight");
  PORTAL_ASSERT(d.session().Finished(), "session did not finish after EOF");
}

}  // namespace portal::testing
