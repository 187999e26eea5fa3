// portalbd-csi: the CSI v1 plugin of portalbd (docs/csi.md). One gRPC server on a unix
// socket serving Identity and, by --role, the Controller and/or Node services.
//
//   portalbd-csi --endpoint unix:///csi/csi.sock --role controller|node|all
//                [--node-id NAME] [--daemon-socket /run/portalbd/portalbd.sock]
//                [--capacity-bytes N] [--owner-token-file F [--owner-tls] [--owner-tls-ca F]]
//
// SIGTERM or SIGINT stop it; the volumes it attached stay attached (their portalbd daemon
// serves them, not this process).
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "common/cli.h"
#include "control/auth.h"
#include "csi/controller_service.h"
#include "csi/driver.h"
#include "csi/identity_service.h"
#include "csi/node_service.h"

namespace {

std::string DefaultNodeId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "";
  return host;
}

// "unix:///csi/csi.sock" (the CO's form) or a bare path; gRPC wants "unix:PATH".
std::string UnixListenAddress(const std::string& endpoint, std::string* path) {
  std::string p = endpoint;
  if (p.rfind("unix://", 0) == 0)
    p = p.substr(7);
  else if (p.rfind("unix:", 0) == 0)
    p = p.substr(5);
  *path = p;
  return "unix:" + p;
}

}  // namespace

int main(int argc, char** argv) {
  // Stop on SIGTERM/SIGINT: blocked here, before gRPC starts its threads (they inherit
  // the mask), and taken by one thread that then shuts the server down.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  CLI::App app{"portalbd-csi: the CSI driver of portalbd (docs/csi.md)"};
  app.set_version_flag("-V,--version", std::string("portalbd-csi ") + PORTALBD_VERSION);
  std::string endpoint = "unix:///csi/csi.sock";
  std::string role = "all";
  std::string node_id = DefaultNodeId();
  portal::csi::DaemonEndpoint daemon;
  portal::csi::ControllerOptions controller_options;
  app.add_option("--endpoint", endpoint, "the CSI socket (unix:///path)")->envname("CSI_ENDPOINT");
  app.add_option("--role", role, "services to serve: controller, node or all")
      ->check(CLI::IsMember({"controller", "node", "all"}));
  app.add_option("--node-id", node_id, "this node's id (NodeGetInfo; default: hostname)")
      ->envname("NODE_ID");
  app.add_option("--daemon-socket", daemon.socket,
                 "control socket of the portalbd daemon on this machine");
  app.add_option("--daemon-timeout-ms", daemon.timeout_ms,
                 "longest wait for one reply of the daemon")
      ->check(CLI::Range(1000, 3'600'000));
  app.add_option("--capacity-bytes", controller_options.capacity_bytes,
                 "GetCapacity's total: bytes all volumes may take (default 0: object storage "
                 "has no figure, and GET_CAPACITY is not advertised)");
  std::string owner_token_file;
  app.add_option("--owner-token-file", owner_token_file,
                 "controller: the token of the nodes' daemons' control listeners ([control] "
                 "token_file), to reach an attached volume's owner");
  app.add_flag("--owner-tls", controller_options.owner.tls,
               "controller: speak TLS to the owners' control listeners");
  app.add_option("--owner-tls-ca", controller_options.owner.tls_ca_file,
                 "controller: CA file the owners' certificates must chain to (implies "
                 "--owner-tls; default: the system's CAs)");
  portal::cli::RefuseEmptyValues(app);
  CLI11_PARSE(app, argc, argv);

  portal::csi::Roles roles{.controller = role != "node", .node = role != "controller"};
  if (roles.node && node_id.empty()) {
    fmt::print(stderr, "Error: --node-id: no hostname to default to; give one\n");
    return 1;
  }
  if (!controller_options.owner.tls_ca_file.empty()) controller_options.owner.tls = true;
  if (!owner_token_file.empty()) {
    auto token = portal::control::LoadTokenFile(owner_token_file, "--owner-token-file");
    if (!token.ok()) {
      fmt::print(stderr, "Error: {}\n", token.status().message());
      return 1;
    }
    controller_options.owner.token = std::move(*token);
  }
  std::string socket_path;
  const std::string address = UnixListenAddress(endpoint, &socket_path);
  if (socket_path.empty() || socket_path[0] != '/') {
    fmt::print(stderr, "Error: --endpoint '{}': want unix:///absolute/path\n", endpoint);
    return 1;
  }
  unlink(socket_path.c_str());  // a stale socket from a previous run

  portal::csi::IdentityService identity(roles, daemon);
  std::unique_ptr<portal::csi::ControllerService> controller;
  std::unique_ptr<portal::csi::NodeService> node;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&identity);
  if (roles.controller) {
    controller = std::make_unique<portal::csi::ControllerService>(daemon, controller_options);
    builder.RegisterService(controller.get());
  }
  if (roles.node) {
    node = std::make_unique<portal::csi::NodeService>(daemon, node_id);
    builder.RegisterService(node.get());
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    fmt::print(stderr, "Error: cannot listen on {}\n", endpoint);
    return 1;
  }
  fmt::print(stderr, "portalbd-csi {}: {} serving {} on {}\n", PORTALBD_VERSION,
             std::string(portal::csi::kDriverName), role, endpoint);

  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server->Shutdown();
  });
  server->Wait();
  stopper.join();
  unlink(socket_path.c_str());
  return 0;
}
