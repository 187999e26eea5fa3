#include "daemon/device_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace portal::daemon {
namespace {

constexpr int kVersion = 1;
constexpr size_t kMaxStateBytes = 16 << 20;
constexpr int kMaxIndex = 1 << 20;  // the kernel's nbd minors are far fewer

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(fmt::format("device state file {}: {}: {}", path, what,
                                     std::strerror(errno)));
}

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", path);
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::string DeviceBackend(const std::string& volume) { return "portalbd:" + volume; }

Result<std::vector<DeviceRecord>> LoadDeviceState(const std::string& path) {
  std::vector<DeviceRecord> out;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return out;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Errno("cannot read", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  auto bad = [&](const std::string& why) {
    return Status::Corruption(fmt::format(
        "device state file {} is damaged: {} (move it aside to start without reattaching "
        "the devices it lists)",
        path, why));
  };
  if (text.size() > kMaxStateBytes) return bad("larger than 16 MiB");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != kVersion) {
    return bad("unknown version (this portalbd reads version 1)");
  }
  auto devices = j.find("devices");
  if (devices == j.end() || !devices->is_array()) return bad("'devices' is not an array");
  for (const auto& d : *devices) {
    if (!d.is_object()) return bad("a device is not an object");
    auto index = d.find("index");
    auto volume = d.find("volume");
    auto ro = d.find("read_only");
    auto backend = d.find("backend");
    if (index == d.end() || !index->is_number_unsigned() ||
        index->get<uint64_t>() >= static_cast<uint64_t>(kMaxIndex)) {
      return bad("a device has no valid 'index'");
    }
    if (volume == d.end() || !volume->is_string() || volume->get<std::string>().empty()) {
      return bad("a device has no 'volume'");
    }
    if (ro == d.end() || !ro->is_boolean()) return bad("a device has no 'read_only'");
    if (backend == d.end() || !backend->is_string()) return bad("a device has no 'backend'");
    DeviceRecord r;
    r.index = static_cast<int>(index->get<uint64_t>());
    r.volume = volume->get<std::string>();
    r.read_only = ro->get<bool>();
    r.backend = backend->get<std::string>();
    for (const auto& other : out) {
      if (other.index == r.index) return bad(fmt::format("device {} listed twice", r.index));
    }
    out.push_back(std::move(r));
  }
  return out;
}

Status SaveDeviceState(const std::string& path, const std::vector<DeviceRecord>& records) {
  nlohmann::ordered_json j;
  j["version"] = kVersion;
  j["devices"] = nlohmann::ordered_json::array();
  for (const auto& r : records) {
    nlohmann::ordered_json d;
    d["index"] = r.index;
    d["volume"] = r.volume;
    d["read_only"] = r.read_only;
    d["backend"] = r.backend;
    j["devices"].push_back(std::move(d));
  }
  const std::string data = j.dump(1) + "\n";
  const std::filesystem::path p(path);
  const std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::IOError(
        fmt::format("device state file {}: cannot create {}: {}", path, dir, ec.message()));
  }
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create " + tmp, path);
  Status st = WriteAll(fd, data, path);
  if (st.ok() && ::fsync(fd) != 0) st = Errno("fsync", path);
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Errno("rename", path);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  // The rename is durable once the directory is.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno("cannot open directory " + dir, path);
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return Errno("fsync of " + dir, path);
  return Status::Ok();
}

}  // namespace portal::daemon
