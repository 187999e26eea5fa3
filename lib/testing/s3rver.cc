#include "testing/s3rver.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace portal::testing {

std::string S3rver::ScriptPath() {
  if (!HaveProgram("node")) return "";
  std::string path;
  if (const char* p = std::getenv("PORTALBD_S3RVER"); p && *p) {
    path = p;
  } else {
    path = SourceDir() + "/.deps/s3rver/node_modules/s3rver/bin/s3rver.js";
  }
  return ::access(path.c_str(), R_OK) == 0 ? path : "";
}

Result<std::unique_ptr<S3rver>> S3rver::Start(const std::vector<std::string>& buckets) {
  std::string script = ScriptPath();
  if (script.empty()) {
    return Status::NotFound(
        "s3rver is not installed (run scripts/setup.sh, or set PORTALBD_S3RVER)");
  }
  std::unique_ptr<S3rver> s(new S3rver());
  s->data_dir_ = s->dir_.Join("data");
  std::filesystem::create_directories(s->data_dir_);
  std::string log = s->dir_.Join("s3rver.log");
  // FreeLoopbackPort can race with other processes: try a few ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->port_ = FreeLoopbackPort();
    std::vector<std::string> argv = {
        "node",      script,      "--directory", s->data_dir_,
        "--address", "127.0.0.1", "--port",      std::to_string(s->port_),
        "--silent"};
    for (const auto& b : buckets) {
      argv.push_back("--configure-bucket");
      argv.push_back(b);
    }
    s->process_ = std::make_unique<Subprocess>(
        argv, log, std::vector<std::string>{"NODE_OPTIONS=--openssl-legacy-provider"});
    if (WaitForPort(s->port_, 20000) && s->process_->running()) return s;
    s->process_->Stop(2000);
  }
  return Status::Unavailable("s3rver did not start; its log: " + ReadFile(log));
}

S3rver::~S3rver() {
  if (process_) process_->Stop(5000);
}

std::string S3rver::endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

s3::ClientOptions S3rver::client_options() const {
  s3::ClientOptions o;
  o.endpoint = endpoint();
  o.allow_http = true;
  o.path_style = true;
  o.region = "us-east-1";
  o.access_key_id = "S3RVER";
  o.secret_access_key = "S3RVER";
  return o;
}

}  // namespace portal::testing
