#include "csi/node_host.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

extern char** environ;

namespace portal::csi {
namespace {

constexpr size_t kMaxOutputBytes = 64 * 1024;

void Append(std::string* out, const char* data, size_t n) {
  out->append(data, n);
  if (out->size() > kMaxOutputBytes) out->erase(0, out->size() - kMaxOutputBytes);
}

}  // namespace

Result<CommandResult> RealNodeHost::Run(const std::vector<std::string>& argv) {
  PORTAL_ASSERT(!argv.empty(), "empty argv");
  if (!Installed(argv[0])) return Status::NotFound(fmt::format("{} is not installed", argv[0]));
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Status::IOError(std::strerror(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return Status::IOError(std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return Status::IOError(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  std::string out;
  std::string err;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        Append(i == 0 ? &out : &err, buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return Status::IOError(std::strerror(errno));
  }
  CommandResult result;
  result.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  result.output = out + err;
  return result;
}

bool RealNodeHost::Installed(std::string_view program) {
  const std::string name(program);
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string_view dirs =
      path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (!dirs.empty()) {
    const size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

Result<std::string> RealNodeHost::ReadHead(const std::string& device, size_t bytes) {
  const int fd = open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(fmt::format("open {}: {}", device, std::strerror(errno)));
  std::string data(bytes, '\0');
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = pread(fd, data.data() + done, bytes - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return Status::IOError(fmt::format("read {}: {}", device, std::strerror(err)));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  data.resize(done);
  return data;
}

namespace {

// "/dev/nbd3" -> "nbd3"; "" for anything that is not a plain /dev/NAME.
std::string DevName(const std::string& device) {
  constexpr std::string_view kDev = "/dev/";
  if (device.rfind(kDev, 0) != 0) return "";
  std::string name = device.substr(kDev.size());
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') return "";
  return name;
}

Result<uint64_t> ReadNumber(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  if (!(in >> v)) return Status::NotFound("cannot read " + path);
  return v;
}

}  // namespace

Result<uint64_t> RealNodeHost::DeviceSizeBytes(const std::string& device) {
  const std::string name = DevName(device);
  if (name.empty()) return Status::InvalidArgument("not a device under /dev: " + device);
  ASSIGN_OR_RETURN(uint64_t sectors, ReadNumber("/sys/class/block/" + name + "/size"));
  return sectors * 512;  // sysfs counts 512-byte sectors whatever the block size
}

Result<std::vector<NbdSlot>> RealNodeHost::NbdDevices() {
  std::vector<NbdSlot> slots;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("nbd", 0) != 0 || name.size() == 3 ||
        name.find_first_not_of("0123456789", 3) != std::string::npos) {
      continue;
    }
    NbdSlot slot;
    slot.path = "/dev/" + name;
    // Connected devices have a pid file (the process that attached them) or a size.
    auto size = ReadNumber(entry.path().string() + "/size");
    slot.in_use = std::filesystem::exists(entry.path() / "pid") || (size.ok() && *size > 0);
    slots.push_back(std::move(slot));
  }
  if (ec) return Status::IOError("cannot list /sys/block: " + ec.message());
  return slots;
}

std::string DescribeFailure(const std::vector<std::string>& argv, const CommandResult& result) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  std::string output = result.output;
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  return fmt::format("{}: exit {}{}{}", cmd, result.exit_code, output.empty() ? "" : ": ", output);
}

}  // namespace portal::csi
