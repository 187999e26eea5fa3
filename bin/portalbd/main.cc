// portalbd: the daemon. config -> store -> volume -> NBD server (+ control socket).
//
// SIGINT/SIGTERM: stop accepting, let connections finish their in-flight requests, finish
// the [record] trace, flush the volume, exit 0.
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "util/log.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "portalbd: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using portal::config::Config;
  CLI::App app{"portalbd: an NBD block device server backed by object storage"};
  app.set_version_flag("-V,--version", std::string("portalbd ") + PORTALBD_VERSION);
  std::string config_path, disk_size, address, storage, socket_path, log_level = "info";
  std::string record_path, record_workload;
  auto* config_opt = app.add_option("-c,--config", config_path, "TOML configuration file");
  auto* disk_size_opt = app.add_option("--disk-size-gb", disk_size,
                                       "device size in GiB (2^30 bytes); overrides the file");
  auto* address_opt =
      app.add_option("--address", address, "NBD listen address, HOST:PORT or unix:/path");
  auto* storage_opt = app.add_option("--storage", storage,
                                     "storage URL: memory://, file:///path, s3://bucket/prefix");
  auto* socket_opt = app.add_option("--socket", socket_path, "control socket path");
  auto* record_opt = app.add_option(
      "--record", record_path,
      "record every request on the portalbd export to this trace file (JSON, as "
      "trace-record writes)");
  auto* record_workload_opt =
      app.add_option("--record-workload", record_workload, "workload name in the recorded trace");
  bool salvage = false;
  app.add_flag("--salvage", salvage,
               "open a damaged volume read-only, as of its first missing segment, to copy out "
               "what is left (nothing is written to the store)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  // An empty value is refused like in the file: `--storage "$URL"` with $URL unset used to
  // mean "not given", i.e. memory://, whose acknowledged FLUSHes are lost at exit.
  portal::cli::RefuseEmptyValues(app);
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;

  portal::log::Init(log_level);
  auto log = portal::log::Get("portalbd");

  Config cfg;
  std::vector<std::string> warnings;
  // "Given" is the option's count, never a non-empty value.
  if (config_opt->count()) {
    auto loaded = portal::config::LoadFile(config_path, cfg, &warnings);
    if (!loaded.ok()) return Fail(loaded.status().message());
    cfg = *loaded;
  }
  if (disk_size_opt->count()) {
    uint64_t gb = 0;
    auto [p, ec] = std::from_chars(disk_size.data(), disk_size.data() + disk_size.size(), gb);
    if (ec != std::errc() || p != disk_size.data() + disk_size.size()) {
      return Fail("--disk-size-gb must be a whole number of GiB (got '" + disk_size + "')");
    }
    cfg.disk_size_gb = gb;
    cfg.disk_size_set = true;
  }
  cfg.salvage = salvage;
  if (address_opt->count()) cfg.address = address;
  if (storage_opt->count()) cfg.storage_url = storage;
  if (socket_opt->count()) cfg.socket = socket_path;
  if (record_opt->count()) cfg.record_path = record_path;
  if (record_workload_opt->count()) {
    if (cfg.record_path.empty()) return Fail("--record-workload needs --record or [record] path");
    cfg.record_workload = record_workload;
  }
  if (auto st = portal::config::Validate(cfg); !st.ok()) return Fail(st.message());
  for (const auto& w : warnings) log->warn("{}", w);

  // Signals are taken synchronously by the main thread; block them before any thread
  // starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  portal::daemon::Daemon daemon(cfg);
  if (auto st = daemon.Start(); !st.ok()) {
    (void)daemon.Stop();
    return Fail(st.ToString());
  }
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) {  // kill -USR1: log the status line
      log->info("{}", daemon.StatusLine());
      continue;
    }
    log->info("Received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  if (auto st = daemon.Stop(); !st.ok()) {
    log->error("shutdown did not complete cleanly error=\"{}\"", st.ToString());
    return 1;
  }
  log->info("portalbd stopped");
  return 0;
}
