#include "objstore/file_key.h"

#include "util/assert.h"

namespace portal::objstore::filekey {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool Plain(unsigned char c, bool first) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  if (c == '_' || c == '-') return true;
  return c == '.' && !first;
}

std::string EncodeSegment(std::string_view seg) {
  if (seg.empty()) return "%";
  std::string out;
  out.reserve(seg.size());
  for (size_t i = 0; i < seg.size(); ++i) {
    auto c = static_cast<unsigned char>(seg[i]);
    if (Plain(c, i == 0)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is not canonical
}

// Inverse of EncodeSegment for canonical input; nullopt otherwise.
std::optional<std::string> DecodeSegment(std::string_view enc) {
  if (enc == "%") return std::string();
  std::string out;
  for (size_t i = 0; i < enc.size();) {
    if (enc[i] == '%') {
      if (i + 2 >= enc.size()) return std::nullopt;
      int hi = HexValue(enc[i + 1]), lo = HexValue(enc[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 3;
    } else {
      out.push_back(enc[i]);
      ++i;
    }
  }
  if (EncodeSegment(out) != enc) return std::nullopt;  // only canonical names are ours
  return out;
}

// Appends `name` (plus `suffix`) as one or more path components, cut into pieces.
void AppendName(std::string* path, std::string_view name, std::string_view suffix) {
  bool first = true;
  while (name.size() > kMaxPiece) {
    size_t cut = kMaxPiece;
    // Never cut inside "%HH": back up to the start of an escape that the cut would split.
    if (name[cut - 1] == '%') {
      cut -= 1;
    } else if (name[cut - 2] == '%') {
      cut -= 2;
    }
    if (!first) path->push_back('+');
    path->append(name.substr(0, cut));
    path->append("+/");
    name.remove_prefix(cut);
    first = false;
  }
  // A piece after the first starts with '+': the cut may fall before a '.', and no name
  // may start with one.
  if (!first) path->push_back('+');
  path->append(name);
  path->append(suffix);
}

void AppendDirSegments(std::string* path, std::string_view segments) {
  // `segments` ends with '/': each '/'-terminated segment becomes a directory.
  size_t start = 0;
  while (start < segments.size()) {
    size_t slash = segments.find('/', start);
    PORTAL_ASSERT(slash != std::string_view::npos, "segments must end with '/'");
    AppendName(path, EncodeSegment(segments.substr(start, slash - start)), "~/");
    start = slash + 1;
  }
}

}  // namespace

std::string EncodeKey(std::string_view key) {
  PORTAL_ASSERT(!key.empty(), "empty key");
  std::string path;
  size_t last = key.rfind('/');
  if (last != std::string_view::npos) AppendDirSegments(&path, key.substr(0, last + 1));
  std::string_view tail = last == std::string_view::npos ? key : key.substr(last + 1);
  AppendName(&path, EncodeSegment(tail), "");
  return path;
}

PrefixDir EncodePrefixDir(std::string_view prefix) {
  PrefixDir out;
  size_t last = prefix.rfind('/');
  if (last == std::string_view::npos) return out;
  out.key_prefix = std::string(prefix.substr(0, last + 1));
  AppendDirSegments(&out.dir, out.key_prefix);
  if (!out.dir.empty()) out.dir.pop_back();  // no trailing '/'
  return out;
}

DecodedName DecodeName(std::string_view pending, std::string_view name, bool is_dir) {
  DecodedName out;
  if (name.empty() || name[0] == '.') return out;
  if (!pending.empty()) {
    // Inside a cut name every piece starts with '+'.
    if (name[0] != '+') return out;
    name.remove_prefix(1);
    if (name.empty()) return out;
  }
  if (is_dir && name.back() == '+') {
    name.remove_suffix(1);
    if (name.empty()) return out;
    out.kind = NameKind::kContinued;
    out.text = std::string(name);
    return out;
  }
  std::string full(pending);
  NameKind kind = NameKind::kFile;
  if (is_dir) {
    if (name.back() != '~') return out;
    name.remove_suffix(1);
    kind = NameKind::kDir;
  }
  full.append(name);
  auto seg = DecodeSegment(full);
  if (!seg) return out;
  out.kind = kind;
  out.text = std::move(*seg);
  return out;
}

}  // namespace portal::objstore::filekey
