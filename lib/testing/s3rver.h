// S3rver: a real S3-compatible server (s3rver 3.7.x on Node, installed by scripts/setup.sh
// into .deps/s3rver) for tests and benchmarks. Runs on 127.0.0.1 with a free port and a
// temporary data directory; killed and removed on destruction.
//
// What s3rver does not check (docs/objstore.md): SigV4 signatures (only that the access
// key exists: S3RVER), If-None-Match (conditional creates always succeed), encoding-type.
// Its ListObjectsV2 continuation tokens need Node's legacy OpenSSL provider, which Start()
// enables (NODE_OPTIONS=--openssl-legacy-provider).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "s3/options.h"
#include "testing/testing.h"
#include "util/status.h"

namespace portal::testing {

class S3rver {
 public:
  // The s3rver entry script: $PORTALBD_S3RVER, else
  // <source>/.deps/s3rver/node_modules/s3rver/bin/s3rver.js. Empty when it (or node) is
  // not installed.
  static std::string ScriptPath();

  // Starts s3rver with `buckets` created, waits until it accepts connections.
  // NotFound if s3rver is not installed; Unavailable if it does not come up.
  static Result<std::unique_ptr<S3rver>> Start(const std::vector<std::string>& buckets);

  ~S3rver();
  S3rver(const S3rver&) = delete;
  S3rver& operator=(const S3rver&) = delete;

  uint16_t port() const { return port_; }
  std::string endpoint() const;  // "http://127.0.0.1:<port>"
  const std::string& data_dir() const { return data_dir_; }
  // Client settings for it: endpoint, access key S3RVER/S3RVER, plain HTTP allowed,
  // path-style, region us-east-1. Retries are kept (tests may lower them).
  s3::ClientOptions client_options() const;

 private:
  S3rver() = default;
  TempDir dir_;
  std::string data_dir_;
  uint16_t port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace portal::testing
