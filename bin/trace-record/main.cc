// trace-record: a transparent NBD proxy that records every request into a trace file.
//
//   trace-record --listen 127.0.0.1:10810 --upstream 127.0.0.1:10809 --output t.json
//   nbdfuse /mnt nbd://127.0.0.1:10810 ...   # any client, any server behind
//   kill -INT <pid>                          # finishes the file
//
// SIGINT/SIGTERM: stop accepting, let in-flight requests finish (up to --drain-ms),
// close connections, write the trace's trailer, exit 0.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli.h"
#include "env/real_env.h"
#include "trace/proxy.h"
#include "trace/recorder.h"
#include "util/log.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "trace-record: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trace-record: record an NBD workload through a transparent proxy"};
  app.set_version_flag("-V,--version", std::string("trace-record ") + PORTALBD_VERSION);
  std::string listen, upstream, output, workload, log_level = "info";
  bool compat = false;
  uint32_t max_connections = 256;
  uint64_t drain_ms = 5000;
  app.add_option("--listen", listen, "where clients connect: HOST:PORT or unix:/path")
      ->required();
  app.add_option("--upstream", upstream, "the NBD server: HOST:PORT or unix:/path")->required();
  app.add_option("--output", output, "trace file to write (JSON)")->required();
  app.add_option("--workload", workload, "workload name in the trace (default: output's stem)");
  app.add_flag("--compat", compat,
               "write only the original portalbd's five op types (no BlockStatus, Cache)");
  app.add_option("--max-connections", max_connections, "simultaneous clients")
      ->check(CLI::Range(1u, 65536u));
  app.add_option("--drain-ms", drain_ms, "on SIGINT/SIGTERM, wait this long for replies")
      ->check(CLI::Range(uint64_t{0}, uint64_t{3'600'000}));  // 1 hour; more wrapped
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  portal::cli::RefuseEmptyValues(app);  // --workload "" no longer means "output's stem"
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;

  portal::log::Init(log_level);
  auto log = portal::log::Get("portalbd::trace");
  if (workload.empty()) workload = std::filesystem::path(output).stem().string();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  portal::RealEnv env(portal::RealEnv::Options{2, 1});
  auto recorder = portal::trace::Recorder::Create({output, workload, compat}, env.NowNanos(),
                                                  env.WallNanos());
  if (!recorder.ok()) return Fail(recorder.status().ToString());
  env.Start();
  portal::trace::Proxy proxy(env, **recorder, {listen, upstream, max_connections});
  if (auto st = proxy.Listen(); !st.ok()) {
    env.Stop();
    (void)(*recorder)->Finish(env.NowNanos());
    return Fail(st.ToString());
  }
  proxy.Start();
  log->info("trace-record listening address={} upstream={} output={} workload={} compat={}",
            proxy.bound_address(), upstream, output, workload, compat);

  int sig = 0;
  sigwait(&signals, &sig);
  log->info("Received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
  proxy.Shutdown(drain_ms);
  portal::Status st = (*recorder)->Finish(env.NowNanos());
  env.Stop();
  if (!st.ok()) {
    log->error("trace not finished: {}", st.ToString());
    return 1;
  }
  log->info("trace written path={} ops={}{} connections={} lost_in_flight={} dropped_by_compat={}",
            output, (*recorder)->ops_written(), (*recorder)->CountsByType(),
            proxy.connections_accepted(), proxy.requests_lost(), (*recorder)->ops_dropped());
  return 0;
}
