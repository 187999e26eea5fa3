#include "csi/mount_table.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace portal::csi {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

}  // namespace

bool MountEntry::read_only() const {
  std::string_view opts = options;
  while (!opts.empty()) {
    const size_t comma = opts.find(',');
    if (opts.substr(0, comma) == "ro") return true;
    if (comma == std::string_view::npos) break;
    opts.remove_prefix(comma + 1);
  }
  return false;
}

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
  // (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
  std::vector<MountEntry> mounts;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const auto f = Fields(line);
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") ++sep;
    if (f.size() < 6 || sep + 2 >= f.size()) continue;
    MountEntry e;
    e.root = Unescape(f[3]);
    e.mount_point = Unescape(f[4]);
    e.options = std::string(f[5]);
    e.fs_type = Unescape(f[sep + 1]);
    e.source = Unescape(f[sep + 2]);
    mounts.push_back(std::move(e));
  }
  return mounts;
}

Result<std::vector<MountEntry>> ReadMountTable() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return Status::IOError("cannot read /proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseMountInfo(ss.str());
}

std::string NormalPath(std::string_view path) {
  if (path.empty() || path[0] != '/') return "";
  std::string p = std::filesystem::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

const MountEntry* MountAt(const std::vector<MountEntry>& mounts, std::string_view path) {
  const std::string want = NormalPath(path);
  if (want.empty()) return nullptr;
  const MountEntry* found = nullptr;
  for (const auto& m : mounts) {
    if (m.mount_point == want) found = &m;  // later lines are mounted on top
  }
  return found;
}

bool IsDeviceBind(const MountEntry& entry, std::string_view device) {
  // A bind of /dev/nbd3 shows the devtmpfs it came from and root "/nbd3".
  constexpr std::string_view kDev = "/dev/";
  if (device.substr(0, kDev.size()) != kDev) return false;
  return entry.root.size() > 1 && entry.root.substr(1) == device.substr(kDev.size()) &&
         (entry.fs_type == "devtmpfs" || entry.fs_type == "tmpfs");
}

bool MountShowsDevice(const MountEntry& entry, std::string_view device) {
  return entry.source == device || IsDeviceBind(entry, device);
}

}  // namespace portal::csi
