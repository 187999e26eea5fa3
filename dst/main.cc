// portalbd-dst: deterministic simulation of the volume. See dst/README.md.
//
//   portalbd-dst --seed N [--ops N] [--swarm] [--log LEVEL]
//   portalbd-dst --seed random            (draws a seed and prints it first)
//   DST_SEEDS=100 portalbd-dst --seed 1   (a soak: seeds 1..100, stops at the first failure)
//
// Output of one seed: first line "seed=... <every knob>", last line "fingerprint=<hex>".
// Exit status 0 when every check held, 1 on a violation, 2 on bad arguments.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include <unistd.h>

#include "dst/knobs.h"
#include "dst/sim.h"
#include "util/log.h"

namespace {

char g_repro[512];  // printed if the library aborts (an assertion) mid-run

void OnAbort(int sig) {
  ssize_t n = write(STDOUT_FILENO, g_repro, strlen(g_repro));
  (void)n;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int Usage() {
  std::fprintf(stderr,
               "usage: portalbd-dst --seed N|random [--ops N] [--swarm] [--log LEVEL] [--trace-block B]\n"
               "       DST_SEEDS=COUNT runs COUNT consecutive seeds from --seed\n");
  return 2;
}

int RunOne(uint64_t seed, uint64_t ops, bool swarm, uint64_t trace_block) {
  const portal::dst::Knobs knobs = portal::dst::Knobs::Draw(seed, ops, swarm);
  std::printf("%s\n", knobs.Describe().c_str());
  std::fflush(stdout);
  std::snprintf(g_repro, sizeof g_repro, "\nABORTED (assertion in the simulated code)\nreproduce: %s\n",
                knobs.Command().c_str());
  portal::dst::Simulator sim(knobs);
  sim.set_trace_block(trace_block);
  return sim.Run();
}

}  // namespace

int main(int argc, char** argv) {
  std::string seed_arg;
  uint64_t ops = portal::dst::kDefaultOps;
  bool swarm = false;
  uint64_t trace_block = UINT64_MAX;
  std::string log_level = "off";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--seed") {
      seed_arg = value();
    } else if (a == "--ops") {
      ops = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--swarm") {
      swarm = true;
    } else if (a == "--trace-block") {
      trace_block = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--log") {
      log_level = value();
    } else {
      return Usage();
    }
  }
  if (seed_arg.empty() || ops == 0) return Usage();
  uint64_t seed;
  if (seed_arg == "random") {
    std::random_device rd;  // outside the simulation: only picks the seed, which is printed
    seed = (uint64_t{rd()} << 32 | rd()) % 1'000'000'000'000ULL;
  } else {
    char* end = nullptr;
    seed = std::strtoull(seed_arg.c_str(), &end, 10);
    if (!end || *end) return Usage();
  }
  portal::log::Init(log_level);
  std::signal(SIGABRT, OnAbort);
  std::signal(SIGSEGV, OnAbort);

  uint64_t count = 1;
  if (const char* s = std::getenv("DST_SEEDS")) count = std::max<uint64_t>(1, std::strtoull(s, nullptr, 10));
  for (uint64_t i = 0; i < count; ++i) {
    int rc = RunOne(seed + i, ops, swarm, trace_block);
    if (rc != 0) {
      if (count > 1) std::printf("soak: seed %llu failed after %llu passing seeds\n",
                                 (unsigned long long)(seed + i), (unsigned long long)i);
      return rc;
    }
  }
  if (count > 1) std::printf("soak: %llu seeds passed\n", (unsigned long long)count);
  return 0;
}
