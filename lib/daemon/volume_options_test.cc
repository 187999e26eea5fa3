// [lsm] keys through the TOML parser, validation and the daemon's volume options.
#include <catch2/catch.hpp>

#include "config/config.h"
#include "daemon/daemon.h"
#include "volume/options.h"

namespace portal::daemon {
namespace {

config::Config Parse(const std::string& text, Status* st = nullptr) {
  std::vector<std::string> warnings;
  auto c = config::ParseToml(text, "test.toml", config::Config{}, &warnings);
  if (st) *st = c.ok() ? config::Validate(*c) : c.status();
  return c.ok() ? *c : config::Config{};
}

TEST_CASE("[lsm] gc_grace_ms and gc_interval_ms reach the volume, on every store", "[config]") {
  Status st;
  config::Config c = Parse("[lsm]\ngc_grace_ms = 2000\ngc_interval_ms = 500\n", &st);
  REQUIRE(st.ok());
  REQUIRE(c.gc_grace_ms == 2000u);
  REQUIRE(c.gc_interval_ms == 500u);
  c.storage_url = "file:///tmp/x";
  volume::VolumeOptions o = VolumeOptionsFor(c);
  CHECK(o.gc_grace_ms == 2000);
  CHECK(o.gc_interval_ms == 500);
  c.storage_url = "memory://";  // its own default interval (1000) gives way to the file
  CHECK(VolumeOptionsFor(c).gc_interval_ms == 500);

  // Unset: the volume's defaults.
  config::Config d = Parse("");
  CHECK_FALSE(d.gc_grace_ms.has_value());
  d.storage_url = "file:///tmp/x";
  CHECK(VolumeOptionsFor(d).gc_grace_ms == volume::VolumeOptions{}.gc_grace_ms);
  CHECK(VolumeOptionsFor(d).gc_interval_ms == volume::VolumeOptions{}.gc_interval_ms);
}

TEST_CASE("[lsm] GC keys refuse values that would defeat GC's safety or pace", "[config]") {
  for (const char* text : {"[lsm]\ngc_grace_ms = 10\n", "[lsm]\ngc_interval_ms = 0\n",
                           "[lsm]\ngc_grace_ms = -1\n", "[lsm]\ngc_interval_ms = \"1s\"\n"}) {
    INFO(text);
    Status st;
    Parse(text, &st);
    CHECK_FALSE(st.ok());
    CHECK(st.ToString().find("lsm.gc_") != std::string::npos);
  }
}

}  // namespace
}  // namespace portal::daemon
