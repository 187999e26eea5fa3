// Assertions for bugs: always on (Release too), abort with file:line.
//
// Bad bytes from a peer or a store are never assertions: they are errors (Status).
#pragma once

namespace portal::detail {
[[noreturn]] void AssertFail(const char* expr, const char* file, int line, const char* msg);
}  // namespace portal::detail

#define PORTAL_ASSERT(cond, msg)                                        \
  do {                                                                  \
    if (__builtin_expect(!(cond), 0))                                   \
      ::portal::detail::AssertFail(#cond, __FILE__, __LINE__, (msg));   \
  } while (0)

#define PORTAL_CHECK(cond) PORTAL_ASSERT(cond, "")
