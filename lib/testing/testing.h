// Helpers for tests, the simulator and benchmarks: temporary directories, free loopback
// ports, child processes, and locating built binaries. Not part of the product.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace portal::testing {

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
uint16_t FreeLoopbackPort();

// A child process started with fork/exec; killed (SIGKILL) on destruction if still alive.
class Subprocess {
 public:
  // argv[0] is resolved through PATH. stdout/stderr go to `log_path` if not empty,
  // else are inherited.
  Subprocess(std::vector<std::string> argv, const std::string& log_path = "",
             const std::vector<std::string>& extra_env = {});
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits up to timeout_ms; returns the exit status (or 128 + signal), or -1 on timeout.
  int Wait(int timeout_ms);
  // SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit status.
  int Stop(int timeout_ms = 10000);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

// Runs a command to completion, capturing stdout+stderr. Returns the exit status.
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               int timeout_ms = 600000);

// True if `program` is found on PATH.
bool HaveProgram(const std::string& program);

// Directory holding the built binaries (portalbd, portalctl, ...): $PORTALBD_BUILD_DIR,
// else the directory of the running test binary.
std::string BuildDir();

// Waits until a TCP connect to 127.0.0.1:port (or a unix socket path) succeeds.
bool WaitForPort(uint16_t port, int timeout_ms);
bool WaitForUnixSocket(const std::string& path, int timeout_ms);

// Reads a whole file; empty string if missing.
std::string ReadFile(const std::string& path);

// The source tree (for test data and tools installed under .deps/): $PORTALBD_SOURCE_DIR,
// else the directory CMake configured.
std::string SourceDir();

// True when PORTALBD_ALLOW_SKIP=1: a test whose external tool is missing may then report
// itself skipped instead of failing (CI installs everything and leaves this unset).
bool AllowSkip();

}  // namespace portal::testing
