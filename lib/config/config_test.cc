// ParseToml, LoadFile and Validate against hostile and out-of-range files: each fails with
// a message naming the line or the key and the bound, never with a crash or a wrap.
#include "config/config.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "testing/testing.h"

namespace portal::config {
namespace {

// Parse + Validate, as portalbd does for a file.
Status Check(const std::string& text) {
  std::vector<std::string> warnings;
  auto c = ParseToml(text, "test.toml", Config{}, &warnings);
  return c.ok() ? Validate(*c) : c.status();
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

bool Mentions(const Status& st, const std::string& what) {
  return st.ToString().find(what) != std::string::npos;
}

TEST_CASE("a key of 50000 dotted parts is an error naming its line and not a stack overflow",
          "[config]") {
  std::string key = "a";
  key += Repeat(".a", 49'999);  // 100 KB
  for (const std::string& text : {"# comment\n\n" + key + " = 1\n", "# comment\n\n[" + key + "]\n",
                                  "# comment\n\nx = { " + key + " = 1 }\n"}) {
    Status st = Check(text);
    REQUIRE_FALSE(st.ok());
    CHECK(Mentions(st, "test.toml:3"));
    CHECK(Mentions(st, "dotted parts"));
  }
}

TEST_CASE("deeply nested arrays and inline tables are an error naming their line", "[config]") {
  for (size_t n : {17u, 300u, 100'000u}) {
    INFO(n);
    for (const std::string& text : {"\nx = " + Repeat("[", n) + Repeat("]", n) + "\n",
                                    "\nx = " + Repeat("{a=", n) + "1" + Repeat("}", n) + "\n",
                                    "\nx = " + Repeat("[{a=", n) + "1" + Repeat("}]", n) + "\n"}) {
      Status st = Check(text);
      REQUIRE_FALSE(st.ok());
      CHECK(Mentions(st, "test.toml:2"));
      CHECK(Mentions(st, "nested"));
      CHECK(Mentions(st, "at most 16"));
    }
  }
}

TEST_CASE("a configuration larger than 1 MiB is refused and the error says the bound", "[config]") {
  std::string big = "# ";
  big += Repeat("x", (1 << 20) - 3);
  big += "\n";  // exactly 1 MiB
  REQUIRE(big.size() == (1u << 20));
  CHECK(Check(big).ok());
  Status st = Check(big + "\n");
  REQUIRE_FALSE(st.ok());
  CHECK(Mentions(st, "1 MiB"));

  testing::TempDir dir;
  const std::string path = dir.Join("big.toml");
  std::ofstream(path) << big << "\n";
  std::vector<std::string> warnings;
  auto loaded = LoadFile(path, Config{}, &warnings);
  REQUIRE_FALSE(loaded.ok());
  CHECK(Mentions(loaded.status(), "1 MiB"));
  CHECK(Mentions(loaded.status(), path));
  // A file that never ends is not read to the end.
  auto endless = LoadFile("/dev/zero", Config{}, &warnings);
  REQUIRE_FALSE(endless.ok());
  CHECK(Mentions(endless.status(), "1 MiB"));
}

TEST_CASE("every number in the file has an upper bound named in the error", "[config]") {
  struct Case {
    std::string at_max;   // accepted
    std::string over;     // refused
    std::string message;  // in the refusal
  };
  const Case cases[] = {
      {"[device]\ndisk_size_gb = 8589934591\n", "[device]\ndisk_size_gb = 8589934592\n",
       "device.disk_size_gb must be at most 8589934591"},
      {"[device]\nblock_size = 65536\n", "[device]\nblock_size = 4294967296\n",
       "device.block_size must be"},
      {"[nbd]\nmax_connections = 65536\n", "[nbd]\nmax_connections = 65537\n",
       "nbd.max_connections must be at most 65536"},
      {"[nbd]\nmax_connections = 65536\n", "[nbd]\nmax_connections = 4294967296\n",
       "nbd.max_connections must be at most 65536"},
      {"[lsm]\nflush_interval_ms = 86400000\n", "[lsm]\nflush_interval_ms = 86400001\n",
       "lsm.flush_interval_ms must be at most 86400000 (1 day), got 86400001"},
      {"[lsm]\nflush_interval_ms = 0\n", "[lsm]\nflush_interval_ms = 9223372036854775807\n",
       "lsm.flush_interval_ms must be at most 86400000 (1 day)"},
      {"[lsm]\ngc_interval_ms = 86400000\n", "[lsm]\ngc_interval_ms = 10000000000000\n",
       "lsm.gc_interval_ms must be at most 86400000 (1 day), got 10000000000000"},
      {"[lsm]\ngc_grace_ms = 604800000\n", "[lsm]\ngc_grace_ms = 604800001\n",
       "lsm.gc_grace_ms must be at most 604800000 (7 days)"},
      {"[storage]\nstop_timeout_ms = 3600000\n",
       "[storage]\nstop_timeout_ms = 9223372036854775807\n",
       "storage.stop_timeout_ms must be at most 3600000 (1 hour)"},
      {"[lsm]\nl0_sst_size_bytes = \"1GiB\"\nmax_unflushed_bytes = \"1GiB\"\n",
       "[lsm]\nl0_sst_size_bytes = \"2GiB\"\nmax_unflushed_bytes = \"2GiB\"\n",
       "lsm.l0_sst_size_bytes must be at most 1073741824 (1 GiB)"},
      {"[lsm]\nmax_unflushed_bytes = \"64GiB\"\n", "[lsm]\nmax_unflushed_bytes = \"65GiB\"\n",
       "lsm.max_unflushed_bytes must be at most 68719476736 (64 GiB)"},
      {"[lsm]\nblock_cache_size_bytes = \"1TiB\"\n", "[lsm]\nblock_cache_size_bytes = \"15EiB\"\n",
       "lsm.block_cache_size_bytes must be at most 1099511627776 (1 TiB)"},
      {"[lsm]\ngc_live_ratio = 1.0\n", "[lsm]\ngc_live_ratio = inf\n", "lsm.gc_live_ratio must be"},
      {"[lsm]\ngc_live_ratio = 0\n", "[lsm]\ngc_live_ratio = nan\n", "lsm.gc_live_ratio must be"},
  };
  for (const Case& c : cases) {
    INFO(c.at_max);
    Status ok = Check(c.at_max);
    CHECK(ok.ok());
    INFO(ok.ToString());
    INFO(c.over);
    Status st = Check(c.over);
    REQUIRE_FALSE(st.ok());
    INFO(st.ToString());
    CHECK(Mentions(st, c.message));
  }
}

TEST_CASE("flags are bounded like the file: Validate checks the merged configuration", "[config]") {
  Config c;
  c.gc_interval_ms = 1ull << 62;
  Status st = Validate(c);
  REQUIRE_FALSE(st.ok());
  CHECK(Mentions(st, "lsm.gc_interval_ms must be at most 86400000"));
  c = Config{};
  c.flush_interval_ms = UINT64_MAX;
  CHECK(Mentions(Validate(c), "lsm.flush_interval_ms must be at most 86400000"));
  c = Config{};
  c.disk_size_gb = UINT64_MAX;
  CHECK(Mentions(Validate(c), "device.disk_size_gb must be at most"));
}

TEST_CASE("an empty string value is an error naming the key and never means unset", "[config]") {
  // socket = "" silently kept the default control socket; workload = "" was recorded.
  for (const char* key : {"storage.url", "storage.cache_dir", "nbd.address", "nbd.socket", "socket",
                          "record.path", "record.workload"}) {
    std::string k = key;
    const size_t dot = k.find('.');
    std::string text = dot == std::string::npos
                           ? fmt::format("{} = \"\"\n", k)
                           : fmt::format("[{}]\n{} = \"\"\n", k.substr(0, dot), k.substr(dot + 1));
    if (k == "record.workload") text += "path = \"/tmp/t.json\"\n";
    INFO(text);
    Status st = Check(text);
    REQUIRE_FALSE(st.ok());
    CHECK(Mentions(st, k + " must not be empty"));
  }
}

TEST_CASE("[storage] stop_timeout_ms: default 60 s, bounded 1 s to 1 h", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->stop_timeout_ms == 60'000);
  c = ParseToml("[storage]\nstop_timeout_ms = 3000\n", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->stop_timeout_ms == 3000);
  CHECK(Validate(*c).ok());
  Status st = Check("[storage]\nstop_timeout_ms = 500\n");
  CHECK(Mentions(st, "storage.stop_timeout_ms must be at least 1000, got 500"));
  st = Check("[storage]\nstop_timeout_ms = 3600001\n");
  CHECK(Mentions(st, "storage.stop_timeout_ms must be at most 3600000 (1 hour), got 3600001"));
  CHECK(Check("[storage]\nstop_timeout_ms = \"60s\"\n").code() == Status::Code::kInvalidArgument);
}

TEST_CASE("[log] format: text by default, json, anything else an error naming the key",
          "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->log_format == "text");
  c = ParseToml("[log]\nformat = \"json\"\n", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->log_format == "json");
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[log]\nformat = \"JSON\"\n"),
                 "log.format must be \"text\" or \"json\", got \"JSON\""));
  CHECK(Mentions(Check("[log]\nformat = \"\"\n"), "log.format must not be empty"));
  CHECK(Mentions(Check("[log]\nlevel = \"debug\"\n"), "log.level is not a known"));
}

TEST_CASE("[metrics] address: off when unset, IP:PORT, a unix path an error", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->metrics_address.empty());
  c = ParseToml("[metrics]\naddress = \"127.0.0.1:9109\"\n", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->metrics_address == "127.0.0.1:9109");
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[metrics]\naddress = \"unix:/run/m.sock\"\n"),
                 "metrics.address must be IP:PORT"));
  CHECK(Mentions(Check("[metrics]\naddress = \"9109\"\n"), "metrics.address must be IP:PORT"));
  CHECK(Mentions(Check("[metrics]\nport = 9109\n"), "metrics.port is not a known"));
}

TEST_CASE("[lsm] upload_window: default 8, 1 keeps one upload in flight, 0 is refused",
          "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->upload_window == 8);
  c = ParseToml("[lsm]\nupload_window = 1\n", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->upload_window == 1);
  CHECK(Validate(*c).ok());
  CHECK(warnings.empty());
  CHECK(Mentions(Check("[lsm]\nupload_window = 0\n"), "lsm.upload_window must be at least 1"));
}

TEST_CASE("the installed example configuration parses and validates", "[config]") {
  // packaging/example.toml goes to /usr/share/doc/portalbd/examples/ (cmake/packaging.cmake).
  std::vector<std::string> warnings;
  auto c = LoadFile(testing::SourceDir() + "/packaging/example.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(Validate(*c).ok());
  CHECK(warnings.empty());
  CHECK(c->storage_url == "s3://my-bucket/volumes/vol1");
  CHECK(c->log_format == "text");
}

}  // namespace
}  // namespace portal::config

namespace portal::config {
namespace {

TEST_CASE("[cache] dir and disk_size_bytes: off by default, sizes with units, bounded",
          "[config][disk_cache]") {
  std::vector<std::string> warnings;
  auto d = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(d.ok());
  CHECK(d->disk_cache_size_bytes == 0);
  CHECK(d->disk_cache_dir.empty());
  auto c = ParseToml("[cache]\ndir = \"/var/cache/portalbd\"\ndisk_size_bytes = \"10GiB\"\n",
                     "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->disk_cache_dir == "/var/cache/portalbd");
  CHECK(c->disk_cache_size_bytes == 10ull << 30);
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[cache]\ndisk_size_bytes = 4096\n"), "cache.disk_size_bytes"));
  CHECK(Mentions(Check("[cache]\ndisk_size_bytes = \"2PiB\"\n"), "cache.disk_size_bytes"));
  CHECK(Mentions(Check("[cache]\nsize = 1\n"), "cache.size"));
}

TEST_CASE("storage encryption keys: a key file, old key files for rotation", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml(
      "[storage]\nencryption_key_file = \"/k/new\"\n"
      "encryption_old_key_files = [\"/k/old1\", \"/k/old2\"]\n",
      "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->encryption_key_file == "/k/new");
  CHECK(c->encryption_old_key_files == std::vector<std::string>{"/k/old1", "/k/old2"});
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[storage]\nencryption_old_key_files = [\"/k/old\"]\n"),
                 "storage.encryption_old_key_files"));
  CHECK(Mentions(Check("[storage]\nencryption_key_file = \"/k\"\n"
                       "encryption_old_key_files = \"/k/old\"\n"),
                 "must be an array of strings"));
  CHECK(Mentions(Check("[storage]\nencryption_key_file = 7\n"), "storage.encryption_key_file"));
}

TEST_CASE("[nbd] tls: a mode, and credentials only with TLS on", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml(
      "[nbd]\ntls = \"require\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n"
      "tls_ca = \"/ca.pem\"\ntls_psk_file = \"/k.psk\"\n",
      "t.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->tls == "require");
  CHECK(c->tls_cert == "/c.pem");
  CHECK(c->tls_key == "/k.pem");
  CHECK(c->tls_ca == "/ca.pem");
  CHECK(c->tls_psk_file == "/k.psk");
  CHECK(Validate(*c).ok());
  CHECK(Check("[nbd]\ntls = \"on\"\n").ok());  // the files are checked at start
  Status st = Check("[nbd]\ntls = \"yes\"\n");
  CHECK(Mentions(st, "nbd.tls must be \"off\", \"on\" or \"require\""));
  st = Check("[nbd]\ntls_ca = \"/ca.pem\"\n");
  CHECK(Mentions(st, "nbd.tls_ca is set but nbd.tls is \"off\""));
}

}  // namespace
}  // namespace portal::config

namespace portal::config {
namespace {

TEST_CASE("[storage] ca_file: unset by default, a path when given", "[config][tls]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->ca_file.empty());
  c = ParseToml("[storage]\nca_file = \"/etc/portalbd/ca.pem\"\n", "test.toml", Config{},
                &warnings);
  REQUIRE(c.ok());
  CHECK(c->ca_file == "/etc/portalbd/ca.pem");
  CHECK(Mentions(Check("[storage]\nca_file = \"\"\n"), "storage.ca_file must not be empty"));
}

TEST_CASE("[nbd] in-flight budget and timeouts: defaults, units, bounds", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->max_inflight_bytes == 1ull << 30);
  CHECK(c->handshake_timeout_ms == 10'000);
  CHECK(c->request_timeout_ms == 30'000);
  CHECK(c->idle_timeout_ms == 0);
  c = ParseToml(
      "[nbd]\nmax_inflight_bytes = \"256MiB\"\nhandshake_timeout_ms = 2000\n"
      "request_timeout_ms = 5000\nidle_timeout_ms = 600000\n",
      "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->max_inflight_bytes == 256ull << 20);
  CHECK(c->handshake_timeout_ms == 2000);
  CHECK(c->request_timeout_ms == 5000);
  CHECK(c->idle_timeout_ms == 600'000);
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[nbd]\nmax_inflight_bytes = 4096\n"), "nbd.max_inflight_bytes"));
  CHECK(Mentions(Check("[nbd]\nrequest_timeout_ms = 0\n"), "nbd.request_timeout_ms"));
  CHECK(Mentions(Check("[nbd]\nhandshake_timeout_ms = 3600001\n"), "nbd.handshake_timeout_ms"));
  CHECK(Mentions(Check("[nbd]\nidle_timeout_ms = 10\n"), "nbd.idle_timeout_ms"));
  CHECK(Mentions(Check("[nbd]\nrequest_timeout_ms = \"30s\"\n"), "must be an integer"));
}

TEST_CASE("[device] kernel device keys: defaults and bounds", "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->device_state_file == "/var/lib/portalbd/devices.json");
  CHECK(c->device_io_timeout_ms == 30'000);
  CHECK(c->device_reattach_timeout_ms == 120'000);
  c = ParseToml(
      "[device]\nstate_file = \"/tmp/d.json\"\nio_timeout_ms = 5000\n"
      "reattach_timeout_ms = 0\n",
      "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->device_state_file == "/tmp/d.json");
  CHECK(c->device_io_timeout_ms == 5000);
  CHECK(c->device_reattach_timeout_ms == 0);
  CHECK(Validate(*c).ok());
  CHECK(Mentions(Check("[device]\nio_timeout_ms = 999\n"), "device.io_timeout_ms"));
  CHECK(Mentions(Check("[device]\nio_timeout_ms = 3600001\n"), "device.io_timeout_ms"));
  CHECK(Mentions(Check("[device]\nreattach_timeout_ms = 10\n"), "device.reattach_timeout_ms"));
  CHECK(Mentions(Check("[device]\nreattach_timeout_ms = 86400001\n"),
                 "device.reattach_timeout_ms"));
  CHECK(Mentions(Check("[device]\nstate_file = \"rel.json\"\n"), "device.state_file"));
}

TEST_CASE("[control] socket_group: owner only by default, a group name when given",
          "[config]") {
  std::vector<std::string> warnings;
  auto c = ParseToml("", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->control_socket_group.empty());
  c = ParseToml("[control]\nsocket_group = \"disk\"\n", "test.toml", Config{}, &warnings);
  REQUIRE(c.ok());
  CHECK(c->control_socket_group == "disk");
  CHECK(Mentions(Check("[control]\nsocket_mode = 438\n"), "control.socket_mode is not a known"));
}

TEST_CASE("storage.volumes: \"all\" (the default) or a list of names", "[config]") {
  std::vector<std::string> warnings;
  auto none = ParseToml("[storage]\nurl = \"memory://\"\n", "t.toml", Config{}, &warnings);
  REQUIRE(none.ok());
  CHECK_FALSE(none->volumes.has_value());
  auto all = ParseToml("[storage]\nvolumes = \"all\"\n", "t.toml", Config{}, &warnings);
  REQUIRE(all.ok());
  CHECK_FALSE(all->volumes.has_value());
  auto list = ParseToml("[storage]\nvolumes = [\"portalbd\", \"db\"]\n", "t.toml", Config{},
                        &warnings);
  REQUIRE(list.ok());
  CHECK(list->volumes == std::vector<std::string>{"portalbd", "db"});
  CHECK(Validate(*list).ok());
  auto empty = ParseToml("[storage]\nvolumes = []\n", "t.toml", Config{}, &warnings);
  REQUIRE(empty.ok());
  CHECK(empty->volumes == std::vector<std::string>{});

  for (const char* bad : {"volumes = \"some\"", "volumes = 3", "volumes = [\"a\", 1]"}) {
    Status st = Check(std::string("[storage]\n") + bad + "\n");
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK(Mentions(st, "storage.volumes must be \"all\" or a list of names"));
  }
  Status twice = Check("[storage]\nvolumes = [\"a\", \"a\"]\n");
  CHECK(Mentions(twice, "storage.volumes"));
  CHECK(Mentions(twice, "names 'a' twice"));
  CHECK(Mentions(Check("[storage]\nvolumes = [\"\"]\n"), "holds an empty name"));
}

}  // namespace
}  // namespace portal::config
