// portalbd: the daemon. config -> store -> volume -> NBD server (+ control socket).
//
// SIGINT/SIGTERM: stop accepting, let connections finish their in-flight requests,
// flush the volume, exit 0.
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "config/config.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "nbd/server.h"
#include "util/log.h"
#include "volume/memory_volume.h"

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
  app.add_option("-c,--config", config_path, "TOML configuration file");
  app.add_option("--disk-size-gb", disk_size, "device size in GiB (2^30 bytes); overrides the file");
  app.add_option("--address", address, "NBD listen address, HOST:PORT or unix:/path");
  app.add_option("--storage", storage, "storage URL: memory://, file:///path, s3://bucket/prefix");
  app.add_option("--socket", socket_path, "control socket path");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  CLI11_PARSE(app, argc, argv);

  portal::log::Init(log_level);
  auto log = portal::log::Get("portalbd");

  Config cfg;
  std::vector<std::string> warnings;
  if (!config_path.empty()) {
    auto loaded = portal::config::LoadFile(config_path, cfg, &warnings);
    if (!loaded.ok()) return Fail(loaded.status().message());
    cfg = *loaded;
  }
  if (!disk_size.empty()) {
    uint64_t gb = 0;
    auto [p, ec] = std::from_chars(disk_size.data(), disk_size.data() + disk_size.size(), gb);
    if (ec != std::errc() || p != disk_size.data() + disk_size.size()) {
      return Fail("--disk-size-gb must be a whole number of GiB (got '" + disk_size + "')");
    }
    cfg.disk_size_gb = gb;
  }
  if (!address.empty()) cfg.address = address;
  if (!storage.empty()) cfg.storage_url = storage;
  if (!socket_path.empty()) cfg.socket = socket_path;
  if (auto st = portal::config::Validate(cfg); !st.ok()) return Fail(st.message());
  for (const auto& w : warnings) log->warn("{}", w);

  if (cfg.storage_url != "memory://") {
    return Fail("storage.url " + cfg.storage_url +
                ": only memory:// is available in this build");
  }

  // Signals are taken synchronously by the main thread; block them before any thread
  // starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  portal::RealEnv env;
  env.Start();

  auto device = std::make_shared<portal::volume::MemoryVolume>(cfg.size_bytes(), cfg.block_size);
  portal::nbd::ExportInfo info;
  info.name = "portalbd";
  info.description = "portalbd volume (" + cfg.storage_url + ")";
  info.size_bytes = device->size_bytes();
  info.preferred_block_size = cfg.block_size;
  portal::nbd::SingleExportCatalog catalog(info, device);

  portal::nbd::Server::Options server_options;
  server_options.address = cfg.address;
  server_options.max_connections = cfg.max_connections;
  portal::nbd::Server server(env, catalog, server_options);
  if (auto st = server.Listen(); !st.ok()) {
    env.Stop();
    return Fail(st.message());
  }
  log->info("portalbd started socket={} size_gb={} nbd={} storage=\"{}\" recording={}",
            cfg.socket, cfg.disk_size_gb, server.bound_address(), cfg.storage_url,
            !cfg.record_path.empty());
  server.Start();
  log->info("NBD server listening address={}", server.bound_address());
  log->info("NBD server accepting connections export={} size_bytes={}", info.name,
            info.size_bytes);

  int sig = 0;
  sigwait(&signals, &sig);
  log->info("Received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");

  server.Shutdown();
  portal::Status flushed = portal::BlockOn(device->Flush());
  env.Stop();
  if (!flushed.ok()) {
    log->error("final flush failed error=\"{}\"", flushed.ToString());
    return 1;
  }
  log->info("portalbd stopped");
  return 0;
}
