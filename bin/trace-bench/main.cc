// trace-bench: replays traces as fast as their dependencies allow, in-process against a
// portalbd volume (the daemon's own options for the storage URL) or against any live NBD
// server, and reports throughput, latency percentiles and object-store use.
//
//   trace-bench traces/mkfs-ext4.json
//   trace-bench --all traces --iterations 3 --storage file:///tmp/vol --json out.json
//   trace-bench --all traces --nbd nbd://127.0.0.1:10809/ --connections 4
//
// Exit status: 0 when every trace was replayed (op failures are reported, not fatal),
// 1 for a malformed trace, an unreachable target or bad flags.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/cli.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "env/block_on.h"
#include "env/real_env.h"
#include "nbd/client.h"
#include "objstore/counting_store.h"
#include "trace/bench_report.h"
#include "trace/replay_targets.h"
#include "trace/trace_reader.h"
#include "util/buffer_pool.h"
#include "util/log.h"
#include "volume/volume.h"

namespace {

using portal::Result;
using portal::Status;
using namespace portal::trace;  // NOLINT

struct Settings {
  std::vector<std::string> traces;
  std::string all_dir;
  uint32_t iterations = 3;
  uint32_t warmup = 1;
  uint32_t connections = 1;
  uint32_t iodepth = 32;
  std::string storage = "memory://";
  std::string cache_dir;  // "" = in-memory SQLite cache
  bool unsafe_no_fencing = false;
  std::string nbd_uri;
  std::string pace = "fast";
  std::string json_path;
  bool profile = false;
  std::string profile_dir = ".";
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "trace-bench: error: %s\n", message.c_str());
  return 1;
}

std::string Describe(const Settings& s) {
  return s.nbd_uri.empty() ? "in-process portalbd volume on " + s.storage
                           : "NBD server " + s.nbd_uri;
}

// --storage with "{workload}" replaced by the workload's name: one volume per trace.
std::string StorageFor(const Settings& s, const std::string& workload) {
  std::string url = s.storage;
  static constexpr std::string_view kVar = "{workload}";
  for (size_t at = url.find(kVar); at != std::string::npos; at = url.find(kVar, at + workload.size())) {
    url.replace(at, kVar.size(), workload);
  }
  return url;
}

// --- one replay ---

// `pool` (the daemon's buffer pool, kept across iterations as the daemon keeps it across
// segments) must outlive the call.
Result<IterationReport> RunInProcess(portal::RealEnv& env, portal::BufferPool& pool,
                                     const Trace& t, const std::string& storage,
                                     const Settings& s, const WritePattern& pattern,
                                     const ReplayOptions& ro) {
  portal::config::Config cfg;
  cfg.storage_url = storage;
  cfg.unsafe_no_fencing = s.unsafe_no_fencing;
  portal::volume::VolumeOptions vo = portal::daemon::VolumeOptionsFor(cfg);
  vo.cache_dir = s.cache_dir;
  vo.buffer_pool = &pool;
  uint64_t bs = vo.block_size;
  vo.size_bytes = std::max<uint64_t>(bs, (t.device_size_bytes + bs - 1) / bs * bs);
  if (storage.starts_with("file://")) {
    std::error_code ec;
    std::filesystem::create_directories(storage.substr(7), ec);
  }
  portal::objstore::StoreOptions so;
  so.buffer_pool = &pool;
  auto opened = portal::objstore::OpenStore(storage, env, so);
  if (!opened.ok()) return opened.status().WithContext("--storage " + storage);
  portal::objstore::CountingStore store(std::move(*opened));
  if (Status st = portal::BlockOn(store.CheckAccess()); !st.ok()) {
    return st.WithContext("storage " + storage);
  }
  auto vol = portal::BlockOn(portal::volume::OpenVolume(env, store, vo));
  if (!vol.ok()) return vol.status().WithContext("opening the volume at " + storage);
  auto base = store.stats();
  DeviceTarget target(**vol, pattern);
  IterationReport it;
  it.result = portal::BlockOn(Replay(env, t, target, ro));
  // Closing makes everything durable: its uploads belong to the workload's cost.
  if (Status st = portal::BlockOn((*vol)->Close()); !st.ok()) {
    return st.WithContext("closing the volume");
  }
  it.store = store.stats().Since(base);
  return it;
}

Result<IterationReport> RunNbd(portal::RealEnv& env, const Trace& t, const Settings& s,
                               const WritePattern& pattern, const ReplayOptions& ro) {
  auto uri = portal::nbd::ParseNbdUri(s.nbd_uri);
  if (!uri.ok()) return uri.status();
  std::vector<std::unique_ptr<portal::nbd::Client>> clients;
  for (uint32_t i = 0; i < s.connections; ++i) {
    portal::nbd::Client::Options o;
    o.address = uri->address;
    o.export_name = uri->export_name;
    o.base_allocation = true;
    auto c = portal::BlockOn(portal::nbd::Client::Connect(env, o));
    if (!c.ok()) return c.status();
    if ((*c)->size_bytes() < t.device_size_bytes) {
      return Status::InvalidArgument(fmt::format(
          "the export has {} bytes, the trace needs {}", (*c)->size_bytes(), t.device_size_bytes));
    }
    clients.push_back(std::move(*c));
  }
  NbdTarget target(clients, pattern, t);
  IterationReport it;
  it.result = portal::BlockOn(Replay(env, t, target, ro));
  for (auto& c : clients) (void)portal::BlockOn(c->Close());
  return it;
}

// --- perf ---

// `perf record` attached to this process while it lives; stopped with SIGINT.
class Profiler {
 public:
  bool Start(const std::string& path) {
    std::string perf;
    const char* path_env = std::getenv("PATH");
    std::string dirs = path_env ? path_env : "/usr/bin:/bin";
    for (size_t pos = 0; pos <= dirs.size();) {
      size_t colon = std::min(dirs.find(':', pos), dirs.size());
      std::string candidate = dirs.substr(pos, colon - pos) + "/perf";
      if (colon > pos && ::access(candidate.c_str(), X_OK) == 0) {
        perf = candidate;
        break;
      }
      pos = colon + 1;
    }
    if (perf.empty()) {
      std::printf("  profile: perf not found; not profiling\n");
      return false;
    }
    std::string pid = std::to_string(::getpid());
    pid_ = ::fork();
    if (pid_ == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execl(perf.c_str(), "perf", "record", "-F", "999", "-g", "-o", path.c_str(), "-p",
              pid.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    path_ = path;
    ::usleep(300 * 1000);  // let perf attach before the measured runs
    return pid_ > 0;
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    std::printf("  profile: %s (perf report -i %s)\n", path_.c_str(), path_.c_str());
    pid_ = -1;
  }
  ~Profiler() { Stop(); }

 private:
  pid_t pid_ = -1;
  std::string path_;
};

// --- a workload ---

Result<WorkloadReport> Bench(portal::RealEnv& env, const std::string& path, const Settings& s,
                             const WritePattern& pattern) {
  auto loaded = LoadTrace(path);
  if (!loaded.ok()) return loaded.status();
  const Trace& t = *loaded;
  WorkloadReport w;
  w.name = t.workload.empty() ? std::filesystem::path(path).stem().string() : t.workload;
  w.trace_path = path;
  w.trace_ops = t.ops.size();
  w.device_size_bytes = t.device_size_bytes;
  std::array<uint64_t, kNumOpTypes> counts{};
  for (const auto& op : t.ops) ++counts[static_cast<size_t>(op.type)];
  std::string mix;
  for (size_t i = 0; i < kNumOpTypes; ++i) {
    if (counts[i]) mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", OpTypeName(static_cast<OpType>(i)), counts[i]);
  }
  std::printf("\n=== %s (%s) ===\n  device %.1f MiB, %zu ops (%s), recorded over %.2f s\n",
              w.name.c_str(), path.c_str(), static_cast<double>(t.device_size_bytes) / (1 << 20),
              t.ops.size(), mix.c_str(), static_cast<double>(t.duration_ns) / 1e9);
  std::fflush(stdout);

  bool tty = ::isatty(2);
  portal::BufferPool pool;
  auto run = [&](const std::string& label) -> Result<IterationReport> {
    ReplayOptions ro;
    ro.iodepth = s.iodepth;
    ro.original_pace = s.pace == "original";
    ro.progress_interval_ns = tty ? 500'000'000 : 5'000'000'000;
    ro.progress = [&, label](uint64_t done, uint64_t total) {
      std::fprintf(stderr, "%s  [%s] %s: %lu/%lu ops (%.0f%%)%s", tty ? "\r" : "",
                   w.name.c_str(), label.c_str(), static_cast<unsigned long>(done),
                   static_cast<unsigned long>(total), total ? 100.0 * done / total : 100.0,
                   tty ? "   " : "\n");
    };
    auto r = s.nbd_uri.empty() ? RunInProcess(env, pool, t, StorageFor(s, w.name), s, pattern, ro)
                               : RunNbd(env, t, s, pattern, ro);
    if (tty) std::fprintf(stderr, "\r%60s\r", "");
    return r;
  };
  for (uint32_t i = 1; i <= s.warmup; ++i) {
    auto r = run(fmt::format("warmup {}", i));
    if (!r.ok()) return r.status();
    std::printf("  warmup %u: %.1f ms\n", i, static_cast<double>(r->result.duration_ns) / 1e6);
  }
  Profiler profiler;
  if (s.profile) {
    std::string name = w.name;
    std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(c) && c != '-'; }, '_');
    profiler.Start(s.profile_dir + "/" + name + ".perf.data");
  }
  for (uint32_t i = 1; i <= s.iterations; ++i) {
    auto r = run(fmt::format("iteration {}/{}", i, s.iterations));
    if (!r.ok()) return r.status();
    std::printf("%s", FormatIteration(i, *r).c_str());
    std::fflush(stdout);
    w.iterations.push_back(std::move(*r));
  }
  profiler.Stop();
  std::printf("%s", FormatWorkload(w).c_str());
  return w;
}

std::vector<std::string> JsonFilesIn(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".json") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trace-bench: replay NBD traces and measure"};
  app.set_version_flag("-V,--version", std::string("trace-bench ") + PORTALBD_VERSION);
  Settings s;
  std::string log_level = "warn";
  app.add_option("traces", s.traces, "trace files (JSON)");
  app.add_option("--all", s.all_dir, "replay every *.json in DIR");
  app.add_option("--iterations", s.iterations, "measured runs per trace")->check(CLI::Range(1u, 1000u));
  app.add_option("--warmup", s.warmup, "unmeasured runs before them")->check(CLI::Range(0u, 1000u));
  app.add_option("--connections", s.connections, "NBD connections (--nbd)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--iodepth", s.iodepth, "requests in flight at most")->check(CLI::Range(1u, 4096u));
  auto* storage = app.add_option("--storage", s.storage,
                                 "in-process volume storage: memory://, file:///dir, s3://bucket/prefix; "
                                 "{workload} in it is replaced by the workload's name");
  app.add_option("--cache-dir", s.cache_dir, "in-process volume's cache directory (default: in memory)");
  app.add_flag("--unsafe-no-fencing", s.unsafe_no_fencing,
               "in-process: run on a store without conditional writes (s3rver), as "
               "[storage] unsafe_no_fencing");
  auto* nbd = app.add_option("--nbd", s.nbd_uri, "replay against a live server: nbd://HOST:PORT/EXPORT "
                                                 "or nbd+unix:///EXPORT?socket=PATH");
  storage->excludes(nbd);
  nbd->excludes(storage);
  app.add_option("--pace", s.pace, "fast: as dependencies allow; original: keep recorded gaps")
      ->check(CLI::IsMember({"fast", "original"}));
  app.add_option("--json", s.json_path, "write every number to FILE");
  app.add_flag("--profile", s.profile, "record a CPU profile of the measured runs (perf)");
  app.add_option("--profile-dir", s.profile_dir, "where --profile writes WORKLOAD.perf.data");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  // An empty --nbd replayed in-process, an empty --json wrote nothing: refuse them.
  portal::cli::RefuseEmptyValues(app);
  if (auto code = portal::cli::Parse(app, argc, argv)) return *code;
  portal::log::Init(log_level);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> paths = s.traces;
  if (!s.all_dir.empty()) {
    auto found = JsonFilesIn(s.all_dir);
    if (found.empty()) return Fail("no *.json traces in " + s.all_dir);
    paths.insert(paths.end(), found.begin(), found.end());
  }
  if (paths.empty()) return Fail("give trace files or --all DIR (see --help)");
  // Every trace is checked before anything runs: a malformed one fails fast.
  for (const auto& p : paths) {
    auto t = LoadTrace(p);
    if (!t.ok()) return Fail(t.status().message());
  }

  std::printf("trace-bench: %s; %u iteration%s (+%u warmup), iodepth %u%s, pace %s\n",
              Describe(s).c_str(), s.iterations, s.iterations == 1 ? "" : "s", s.warmup, s.iodepth,
              s.nbd_uri.empty() ? "" : fmt::format(", {} connection(s)", s.connections).c_str(),
              s.pace.c_str());
  portal::RealEnv env;
  env.Start();
  WritePattern pattern;
  std::vector<WorkloadReport> reports;
  int status = 0;
  for (const auto& p : paths) {
    auto w = Bench(env, p, s, pattern);
    if (!w.ok()) {
      std::fprintf(stderr, "trace-bench: error: %s: %s\n", p.c_str(), w.status().ToString().c_str());
      status = 1;
      break;
    }
    reports.push_back(std::move(*w));
  }
  env.Stop();
  if (!reports.empty()) {
    std::printf("\n=== comparison ===\n%s", FormatTable(reports).c_str());
    std::printf("\n=== latency per op kind ===\n%s", FormatLatencyTable(reports).c_str());
    if (s.nbd_uri.empty()) {
      std::printf("\n=== store requests per op ===\n%s", FormatRequestsTable(reports).c_str());
    }
  }

  if (!s.json_path.empty()) {
    nlohmann::json j;
    j["tool"] = "trace-bench";
    j["version"] = PORTALBD_VERSION;
    j["target"] = s.nbd_uri.empty() ? nlohmann::json{{"kind", "in-process"}, {"storage", s.storage}}
                                    : nlohmann::json{{"kind", "nbd"}, {"uri", s.nbd_uri}};
    j["settings"] = {{"iterations", s.iterations}, {"warmup", s.warmup},
                     {"connections", s.connections}, {"iodepth", s.iodepth}, {"pace", s.pace}};
    j["workloads"] = nlohmann::json::array();
    for (const auto& w : reports) j["workloads"].push_back(WorkloadJson(w));
    std::ofstream out(s.json_path);
    out << j.dump(2) << "\n";
    if (!out) return Fail("cannot write " + s.json_path);
  }
  return status;
}
