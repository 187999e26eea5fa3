// Daemon: config -> object store -> volume -> NBD server. The process shell
// (bin/portalbd/main.cc) parses flags, handles signals and calls Start()/Stop().
//
// Start() fails with one clear line for a bad storage URL, a missing bucket or
// directory, refused credentials, an unreachable endpoint, a store that ignores
// conditional writes (unless unsafe_no_fencing), or an address that cannot be bound.
// Stop() stops accepting, lets connections finish their in-flight requests, makes
// everything durable and closes the volume.
#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "util/status.h"

namespace portal {
class RealEnv;
namespace objstore {
class CountingStore;
class S3Store;
}  // namespace objstore
namespace nbd {
class Server;
class ExportCatalog;
}  // namespace nbd
namespace volume {
class LsmVolume;
struct VolumeOptions;
}  // namespace volume
}  // namespace portal

namespace portal::daemon {

class Daemon {
 public:
  explicit Daemon(config::Config cfg);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  Status Start();
  Status Stop();

  // "127.0.0.1:10809" as bound (the real port when 0 was configured).
  std::string nbd_address() const;
  // One log line with size, storage, epoch, fencing, objects, requests by kind (store
  // calls), buffers, cache; on s3:// also HTTP requests sent and retried.
  std::string StatusLine();

 private:
  std::string HttpCounts() const;

  config::Config cfg_;
  std::unique_ptr<RealEnv> env_;
  std::unique_ptr<objstore::CountingStore> store_;
  objstore::S3Store* s3_ = nullptr;  // inside store_ when the URL is s3://
  std::shared_ptr<volume::LsmVolume> volume_;
  std::unique_ptr<nbd::ExportCatalog> catalog_;
  std::unique_ptr<nbd::Server> server_;
  bool started_ = false;
  bool stopped_ = false;
};

// Volume options for a configuration (memory:// gets its in-process tuning).
volume::VolumeOptions VolumeOptionsFor(const config::Config& cfg);

}  // namespace portal::daemon
