// trace-record: a transparent NBD proxy that records every request into a trace file.
//
//   trace-record --listen 127.0.0.1:10810 --upstream 127.0.0.1:10809 --output t.json
//   nbdfuse /mnt nbd://127.0.0.1:10810 ...   # any client, any server behind
//   kill -INT <pid>                          # finishes the file
//
// TLS on either side (docs/tls.md): --tls on|require with --tls-cert/--tls-key [--tls-ca]
// serves STARTTLS to clients; --upstream-tls does STARTTLS towards the upstream.
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
#include "nbd/handshake.h"
#include "nbd/server.h"  // ParseListenAddress
#include "nbd/tls.h"
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
  std::string tls = "off", tls_cert, tls_key, tls_ca;
  bool upstream_tls = false;
  std::string up_ca, up_cert, up_key, up_hostname;
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
  app.add_option("--tls", tls, "TLS towards clients: off, on or require (as [nbd] tls)")
      ->check(CLI::IsMember({"off", "on", "require"}));
  app.add_option("--tls-cert", tls_cert, "PEM certificate clients see (with --tls on|require)");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", tls_ca, "clients must present a certificate this CA signed");
  auto* up_flag = app.add_flag("--upstream-tls", upstream_tls,
                               "STARTTLS towards the upstream (required: no plaintext fallback)");
  app.add_option("--upstream-tls-ca", up_ca,
                 "CA the upstream's certificate must chain to (default: the system's)")
      ->needs(up_flag);
  app.add_option("--upstream-tls-cert", up_cert, "client certificate for the upstream (mutual TLS)")
      ->needs(up_flag);
  app.add_option("--upstream-tls-key", up_key, "private key of --upstream-tls-cert")
      ->needs(up_flag);
  app.add_option("--upstream-tls-hostname", up_hostname,
                 "name (or IP) the upstream's certificate must carry (default: --upstream's "
                 "host; none for a unix socket)")
      ->needs(up_flag);
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  portal::cli::RefuseEmptyValues(app);  // --workload "" no longer means "output's stem"
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;

  portal::log::Init(log_level);
  auto log = portal::log::Get("portalbd::trace");
  if (workload.empty()) workload = std::filesystem::path(output).stem().string();

  // TLS credentials, checked before anything listens.
  const portal::nbd::TlsMode tls_mode = *portal::nbd::ParseTlsMode(tls);
  std::unique_ptr<portal::nbd::TlsContext> tls_ctx, up_ctx;
  if (tls_mode == portal::nbd::TlsMode::kOff) {
    if (!tls_cert.empty() || !tls_key.empty() || !tls_ca.empty()) {
      return Fail("--tls-cert, --tls-key and --tls-ca need --tls on or --tls require");
    }
  } else {
    if (tls_cert.empty() || tls_key.empty()) {
      return Fail("--tls " + tls + " needs --tls-cert and --tls-key");
    }
    auto ctx = portal::nbd::TlsContext::CreateServer(
        {.cert_file = tls_cert, .key_file = tls_key, .ca_file = tls_ca, .psk_file = ""});
    if (!ctx.ok()) return Fail("--tls: " + ctx.status().ToString());
    tls_ctx = std::move(*ctx);
    for (const auto& w : tls_ctx->warnings()) log->warn("{}", w);
  }
  if (upstream_tls) {
    auto ctx = portal::nbd::TlsContext::CreateClient(
        {.cert_file = up_cert, .key_file = up_key, .ca_file = up_ca, .psk_file = ""});
    if (!ctx.ok()) return Fail("--upstream-tls: " + ctx.status().ToString());
    up_ctx = std::move(*ctx);
    if (up_hostname.empty()) {
      auto addr = portal::nbd::ParseListenAddress(upstream);
      if (addr.ok() && !addr->is_unix) up_hostname = addr->host;
    }
  }

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
  portal::trace::Proxy proxy(env, **recorder,
                             {.listen = listen,
                              .upstream = upstream,
                              .max_connections = max_connections,
                              .tls_mode = tls_mode,
                              .tls = tls_ctx.get(),
                              .upstream_tls = up_ctx.get(),
                              .upstream_tls_hostname = up_hostname});
  if (auto st = proxy.Listen(); !st.ok()) {
    env.Stop();
    (void)(*recorder)->Finish(env.NowNanos());
    return Fail(st.ToString());
  }
  proxy.Start();
  log->info("trace-record listening address={} upstream={} output={} workload={} compat={}"
            " tls={} client_certs={} upstream_tls={}",
            proxy.bound_address(), upstream, output, workload, compat, tls,
            tls_ctx && tls_ctx->verifies_peer() ? "required" : "no",
            upstream_tls ? (up_hostname.empty() ? "ca-only" : up_hostname) : "off");

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
