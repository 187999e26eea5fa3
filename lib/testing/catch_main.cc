// The one Catch2 main for portal_tests. Logs at "warn" unless PORTALBD_TEST_LOG says
// otherwise (e.g. PORTALBD_TEST_LOG=debug ./portal_tests "[volume]").
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

#include "util/log.h"

int main(int argc, char* argv[]) {
  const char* level = std::getenv("PORTALBD_TEST_LOG");
  portal::log::Init(level && *level ? level : "warn");
  return Catch::Session().run(argc, argv);
}
