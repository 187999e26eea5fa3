// portalbd: the daemon. config -> store -> volume -> NBD server (+ control socket).
//
// SIGINT/SIGTERM: stop accepting, let connections finish their in-flight requests, finish
// the [record] trace, flush the volume, exit 0, all within [storage] stop_timeout_ms.
// When written data cannot be made durable in that time (the store keeps failing), exit
// 1 with one line saying how much: "portalbd: stopped with N bytes not durable (...)".
// A second SIGINT/SIGTERM exits at once (1, with that line). Daemon::Stop() enforces the
// deadline; this file also bounds it from outside, in case one store call ignores it.
#include <signal.h>
#include <time.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/cli.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "portalbd/sd_notify.h"
#include "util/log.h"

namespace {

// "text" unless "json" (both checked already: the flag by CLI11, the file by Validate).
portal::log::Format LogFormat(const std::string& name) {
  return portal::log::ParseFormat(name).value_or(portal::log::Format::kText);
}

// The lines portalbd writes to stderr outside the log ("portalbd: error: ...", "portalbd:
// stopped with ..."). With --log-format json they are log records too, so that every
// stderr line is one JSON object.
class Stderr {
 public:
  void set_json(bool json) { json_ = json; }
  void Line(spdlog::level::level_enum level, const std::string& text) const {
    if (json_) {
      portal::log::Get("portalbd")->log(level, "{}", text);
    } else {
      std::fprintf(stderr, "portalbd: %s\n", text.c_str());
    }
    std::fflush(stderr);
  }
  int Fail(const std::string& message) const {
    Line(spdlog::level::err, "error: " + message);
    return 1;
  }

 private:
  bool json_ = false;
};

// Past the stop deadline, Daemon::Stop() still writes the replies of requests that failed
// at it and joins its threads; a store call that ignores the deadline (one S3 request
// with its own retries) may hold it longer. Beyond this much, exit without it.
constexpr uint64_t kStopOverrunMs = 10'000;

// Ends the process now, from the main thread, while Stop() may still run on another.
[[noreturn]] void ExitNow(const Stderr& out, portal::daemon::Daemon& daemon,
                          const std::string& why) {
  const std::string left = daemon.NotDurableSummary();
  if (left.empty()) {
    out.Line(spdlog::level::err, "stopped " + why + ", before the stop finished (no written "
             "data was left to make durable)");
  } else {
    out.Line(spdlog::level::err, "stopped with " + left + ", " + why);
  }
  std::_Exit(1);  // no destructors: Stop() is still running on its thread
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
  std::string volumes;
  auto* volumes_opt = app.add_option(
      "--volumes", volumes,
      "volumes to serve: \"all\" (the default volume and every registered one) or names, "
      "comma-separated (portalbd = the default volume)");
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
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "check the configuration (file and flags) and exit: 0 and \"configuration ok\" "
               "if valid, 1 and the error if not; opens no store, socket or volume");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::string log_format;
  auto* log_format_opt =
      app.add_option("--log-format", log_format,
                     "text (the default) or json: one JSON object per line, for log shippers; "
                     "overrides [log] format")
          ->check(CLI::IsMember({"text", "json"}));
  // An empty value is refused like in the file: `--storage "$URL"` with $URL unset used to
  // mean "not given", i.e. memory://, whose acknowledged FLUSHes are lost at exit.
  portal::cli::RefuseEmptyValues(app);
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;

  // Until the file is read, the flag's format (or text) applies: an error reading the
  // file is written in it.
  Stderr out;
  out.set_json(log_format == "json");
  portal::log::Init(log_level, LogFormat(log_format));
  auto log = portal::log::Get("portalbd");

  Config cfg;
  std::vector<std::string> warnings;
  // "Given" is the option's count, never a non-empty value.
  if (config_opt->count()) {
    auto loaded = portal::config::LoadFile(config_path, cfg, &warnings);
    if (!loaded.ok()) return out.Fail(loaded.status().message());
    cfg = *loaded;
  }
  if (disk_size_opt->count()) {
    uint64_t gb = 0;
    auto [p, ec] = std::from_chars(disk_size.data(), disk_size.data() + disk_size.size(), gb);
    if (ec != std::errc() || p != disk_size.data() + disk_size.size()) {
      return out.Fail("--disk-size-gb must be a whole number of GiB (got '" + disk_size + "')");
    }
    cfg.disk_size_gb = gb;
    cfg.disk_size_set = true;
  }
  cfg.salvage = salvage;
  if (address_opt->count()) cfg.address = address;
  if (storage_opt->count()) cfg.storage_url = storage;
  if (socket_opt->count()) cfg.socket = socket_path;
  if (volumes_opt->count()) {
    if (volumes == "all") {
      cfg.volumes.reset();
    } else {
      cfg.volumes.emplace();
      size_t start = 0;
      while (start <= volumes.size()) {
        const size_t comma = std::min(volumes.find(',', start), volumes.size());
        cfg.volumes->push_back(volumes.substr(start, comma - start));
        start = comma + 1;
      }
    }
  }
  if (record_opt->count()) cfg.record_path = record_path;
  if (record_workload_opt->count()) {
    if (cfg.record_path.empty()) {
      return out.Fail("--record-workload needs --record or [record] path");
    }
    cfg.record_workload = record_workload;
  }
  if (log_format_opt->count()) cfg.log_format = log_format;
  if (auto st = portal::config::Validate(cfg); !st.ok()) return out.Fail(st.message());
  out.set_json(cfg.log_format == "json");
  portal::log::Init(log_level, LogFormat(cfg.log_format));
  for (const auto& w : warnings) log->warn("{}", w);
  if (check_config) {
    out.Line(spdlog::level::info, "configuration ok");
    return 0;
  }

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
    return out.Fail(st.ToString());
  }
  portal::daemon::SdNotify("READY=1");  // serving: units ordered after this one may start
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGUSR1) break;
    log->info("{}", daemon.StatusLine());  // kill -USR1: log the status line
  }
  log->info("Received {}: stopping within stop_timeout_ms={} (send it again to exit at once)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.stop_timeout_ms);
  portal::daemon::SdNotify("STOPPING=1");

  // Stop() on its own thread, so that this one keeps taking signals.
  std::atomic<bool> stopped{false};
  portal::Status result;
  std::thread stopper([&] {
    result = daemon.Stop();
    stopped.store(true);
  });
  const auto overrun = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(cfg.stop_timeout_ms + kStopOverrunMs);
  while (!stopped.load()) {
    const timespec poll{0, 50'000'000};
    const int got = sigtimedwait(&signals, nullptr, &poll);
    if (got == SIGUSR1) {
      log->info("{}", daemon.StatusLine());
    } else if (got == SIGINT || got == SIGTERM) {
      ExitNow(out, daemon, got == SIGINT ? "at a second SIGINT" : "at a second SIGTERM");
    } else if (std::chrono::steady_clock::now() >= overrun) {
      ExitNow(out, daemon, "as the stop overran stop_timeout_ms");
    }
  }
  stopper.join();
  if (!result.ok()) {
    const std::string left = daemon.NotDurableSummary();
    if (!left.empty()) {
      out.Line(spdlog::level::err, "stopped with " + left);
    } else {
      log->error("shutdown did not complete cleanly error=\"{}\"", result.ToString());
    }
    return 1;
  }
  log->info("portalbd stopped");
  return 0;
}
