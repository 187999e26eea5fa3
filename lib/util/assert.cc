#include "util/assert.h"

#include <cstdio>
#include <cstdlib>

namespace portal::detail {

void AssertFail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "%s:%d: assertion failed: %s%s%s\n", file, line, expr,
               (msg && *msg) ? ": " : "", msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace portal::detail
