// objstore-bench: PUT and GET throughput of one object store, by requests in flight.
//
//   objstore-bench --url s3://bucket/prefix --size-mib 8 --count 24 --inflight 1,8,32
//
// For each in-flight level: PUT `count` objects of `size-mib` MiB with at most that many
// calls outstanding, then GET them back (checking sizes), then delete them. Prints one
// line per phase, and a machine-readable "RESULT <label> <op> <inflight> <MB/s> <req/s>"
// line that scripts/bench-objstore.sh reads. S3 settings come from the AWS_* variables.
// Not a test: numbers only.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "common/cli.h"
#include "env/async.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "objstore/counting_store.h"
#include "objstore/object_store.h"
#include "util/log.h"

namespace {

using portal::Status;
using portal::Task;
using portal::objstore::ObjectStore;

struct Phase {
  std::string op;
  int inflight;
  int count;
  uint64_t bytes;
  uint64_t nanos;
};

// `inflight` workers pull the next index until all `count` are done; the first error stops
// the phase.
Task<Status> RunPhase(ObjectStore& store, const std::string& op, const std::string& prefix,
                      const std::string& data, int count, int inflight) {
  std::atomic<int> next{0};
  auto worker = [&]() -> Task<Status> {
    for (int i = next++; i < count; i = next++) {
      std::string key = fmt::format("{}/{:04}", prefix, i);
      if (op == "PUT") {
        Status s = co_await store.Put(key, data);  // a copy per call: Put owns its bytes
        if (!s.ok()) co_return s;
      } else if (op == "GET") {
        auto r = co_await store.Get(key);
        if (!r.ok()) co_return r.status();
        if (r->size() != data.size()) co_return Status::Corruption("short GET of " + key);
      } else {
        Status s = co_await store.Delete(key);
        if (!s.ok()) co_return s;
      }
    }
    co_return Status::Ok();
  };
  std::vector<Task<Status>> workers;
  for (int w = 0; w < inflight; ++w) workers.push_back(worker());
  for (auto& s : co_await portal::WhenAll(std::move(workers))) {
    if (!s.ok()) co_return s;
  }
  co_return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"objstore-bench: object store PUT/GET throughput by requests in flight"};
  app.set_version_flag("-V,--version", std::string("objstore-bench ") + PORTALBD_VERSION);
  std::string url, label, inflight_list = "1,8,32";
  int size_mib = 8, count = 24;
  app.add_option("--url", url, "storage URL (memory://, file:///dir, s3://bucket/prefix)")
      ->required();
  app.add_option("--label", label, "name printed in results (default: the URL)");
  app.add_option("--size-mib", size_mib, "object size in MiB")->check(CLI::Range(1, 1024));
  app.add_option("--count", count, "objects per phase")->check(CLI::Range(1, 100000));
  app.add_option("--inflight", inflight_list, "comma-separated requests-in-flight levels");
  portal::cli::RefuseEmptyValues(app);  // --label "" no longer means "the URL"
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;
  if (label.empty()) label = url;
  portal::log::Init("warn");

  std::vector<int> levels;
  std::stringstream ss(inflight_list);
  for (std::string tok; std::getline(ss, tok, ',');) levels.push_back(std::stoi(tok));

  portal::RealEnv env(portal::RealEnv::Options{2, 8});
  env.Start();
  int rc = 0;
  {
    auto opened = portal::objstore::OpenStore(url, env);
    if (!opened.ok()) {
      std::fprintf(stderr, "objstore-bench: %s\n", opened.status().ToString().c_str());
      return 1;
    }
    portal::objstore::CountingStore store(std::move(*opened));
    if (Status s = portal::BlockOn(store.CheckAccess()); !s.ok()) {
      std::fprintf(stderr, "objstore-bench: %s\n", s.ToString().c_str());
      env.Stop();
      return 1;
    }
    std::string data(static_cast<size_t>(size_mib) << 20, '\0');
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (auto& c : data) {  // incompressible, so no layer can cheat
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    for (int level : levels) {
      std::string prefix = fmt::format("bench-{}", level);
      for (const char* op : {"PUT", "GET", "DELETE"}) {
        uint64_t start = env.NowNanos();
        Status s = portal::BlockOn(RunPhase(store, op, prefix, data, count, level));
        uint64_t nanos = env.NowNanos() - start;
        if (!s.ok()) {
          std::fprintf(stderr, "objstore-bench: %s inflight=%d: %s\n", op, level,
                       s.ToString().c_str());
          rc = 1;
          break;
        }
        if (std::string(op) == "DELETE") continue;
        double secs = static_cast<double>(nanos) / 1e9;
        double mbps = static_cast<double>(data.size()) * count / 1e6 / secs;
        double rps = count / secs;
        std::printf("%-8s %-4s inflight=%-3d objects=%d x %d MiB  %8.1f MB/s  %7.1f req/s\n",
                    label.c_str(), op, level, count, size_mib, mbps, rps);
        std::printf("RESULT %s %s %d %.1f %.1f\n", label.c_str(), op, level, mbps, rps);
      }
      if (rc != 0) break;
    }
    std::printf("%s requests: %s\n", label.c_str(), store.stats().ToString().c_str());
  }
  env.Stop();
  return rc;
}
