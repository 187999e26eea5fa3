#include "trace/trace_format.h"

#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "nbd/protocol.h"

namespace portal::trace {
namespace {

constexpr std::string_view kTypeNames[kNumOpTypes] = {
    "Read", "Write", "Trim", "WriteZeroes", "Flush", "BlockStatus", "Cache"};
constexpr std::string_view kFlagNames[kNumOpFlags] = {"FUA", "NO_HOLE", "DF", "REQ_ONE",
                                                      "FAST_ZERO"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// `n` digits at s[pos..].
bool Digits(std::string_view s, size_t pos, size_t n) {
  if (s.size() < pos + n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (!IsDigit(s[pos + i])) return false;
  }
  return true;
}

}  // namespace

std::string_view OpTypeName(OpType type) { return kTypeNames[static_cast<size_t>(type)]; }

std::optional<OpType> OpTypeFromName(std::string_view name) {
  for (size_t i = 0; i < kNumOpTypes; ++i) {
    if (kTypeNames[i] == name) return static_cast<OpType>(i);
  }
  return std::nullopt;
}

bool IsOriginalType(OpType type) {
  return type != OpType::kBlockStatus && type != OpType::kCache;
}

bool IsWriteLike(OpType type) {
  return type == OpType::kWrite || type == OpType::kTrim || type == OpType::kWriteZeroes;
}

std::string_view OpFlagName(uint16_t bit) {
  for (size_t i = 0; i < kNumOpFlags; ++i) {
    if (bit == (1u << i)) return kFlagNames[i];
  }
  return "?";
}

std::optional<uint16_t> OpFlagFromName(std::string_view name) {
  for (size_t i = 0; i < kNumOpFlags; ++i) {
    if (kFlagNames[i] == name) return static_cast<uint16_t>(1u << i);
  }
  return std::nullopt;
}

uint16_t OpFlagsFromNbd(uint16_t f) {
  uint16_t out = 0;
  if (f & nbd::NBD_CMD_FLAG_FUA) out |= kFlagFua;
  if (f & nbd::NBD_CMD_FLAG_NO_HOLE) out |= kFlagNoHole;
  if (f & nbd::NBD_CMD_FLAG_DF) out |= kFlagDf;
  if (f & nbd::NBD_CMD_FLAG_REQ_ONE) out |= kFlagReqOne;
  if (f & nbd::NBD_CMD_FLAG_FAST_ZERO) out |= kFlagFastZero;
  return out;
}

std::string Rfc3339(int64_t unix_ns) {
  time_t secs = static_cast<time_t>(unix_ns / 1'000'000'000);
  int64_t frac = unix_ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  struct tm tm;
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

bool LooksLikeRfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS
  if (!Digits(s, 0, 4) || s.size() < 19 || s[4] != '-' || !Digits(s, 5, 2) || s[7] != '-' ||
      !Digits(s, 8, 2) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !Digits(s, 11, 2) ||
      s[13] != ':' || !Digits(s, 14, 2) || s[16] != ':' || !Digits(s, 17, 2)) {
    return false;
  }
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    if (pos == start) return false;
  }
  std::string_view zone = s.substr(pos);
  if (zone == "Z" || zone == "z") return true;
  return zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && Digits(zone, 1, 2) &&
         zone[3] == ':' && Digits(zone, 4, 2);
}

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out->append(fmt::format("\\u{:04x}", static_cast<unsigned>(c)));
        } else {
          out->push_back(c);  // UTF-8 passes through
        }
    }
  }
  out->push_back('"');
}

void AppendOpJson(const TraceOp& op, std::string* out) {
  fmt::format_to(std::back_inserter(*out), R"({{"seq":{},"timestamp_ns":{},"op":{{"type":"{}")",
                 op.seq, op.timestamp_ns, OpTypeName(op.type));
  if (HasRange(op.type)) {
    fmt::format_to(std::back_inserter(*out), R"(,"offset":{},"length":{})", op.offset,
                   op.length);
  }
  fmt::format_to(std::back_inserter(*out), R"(}},"duration_ns":{},"success":{})", op.duration_ns,
                 op.success ? "true" : "false");
  if (op.conn != 0) fmt::format_to(std::back_inserter(*out), R"(,"conn":{})", op.conn);
  if (op.start_ns) fmt::format_to(std::back_inserter(*out), R"(,"start_ns":{})", *op.start_ns);
  if (op.flags != 0) {
    out->append(R"(,"flags":[)");
    bool first = true;
    for (size_t i = 0; i < kNumOpFlags; ++i) {
      if (!(op.flags & (1u << i))) continue;
      if (!first) out->push_back(',');
      first = false;
      out->push_back('"');
      out->append(kFlagNames[i]);
      out->push_back('"');
    }
    out->push_back(']');
  }
  out->push_back('}');
}

// --- TraceWriter ---

TraceWriter::~TraceWriter() {
  if (file_) std::fclose(file_);
}

Status TraceWriter::Check(bool ok, std::string_view what) {
  if (!ok && error_.ok()) {
    error_ = Status::IOError(fmt::format("{} {}: {}", what, path_, std::strerror(errno)));
  }
  return error_;
}

Status TraceWriter::Open(const std::string& path, Options options) {
  PORTAL_ASSERT(file_ == nullptr, "TraceWriter opened twice");
  path_ = path;
  options_ = std::move(options);
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) return Check(false, "cannot create trace file");
  // Ops are small lines; a large stdio buffer keeps syscalls rare.
  std::setvbuf(file_, nullptr, _IOFBF, 256 * 1024);
  std::string head = "{\"workload\":";
  AppendJsonString(options_.workload, &head);
  head.append(",\"start_time\":");
  AppendJsonString(options_.start_time, &head);
  head.append(",\"ops\":[");
  return Check(std::fwrite(head.data(), 1, head.size(), file_) == head.size(), "writing");
}

Result<bool> TraceWriter::Append(const TraceOp& op) {
  if (!error_.ok()) return error_;
  PORTAL_ASSERT(file_ != nullptr, "TraceWriter::Append before Open");
  if (options_.compat && !IsOriginalType(op.type)) {
    ++dropped_;
    return false;
  }
  line_.clear();
  line_.append(next_seq_ == 0 ? "\n" : ",\n");
  TraceOp numbered = op;
  numbered.seq = next_seq_;
  AppendOpJson(numbered, &line_);
  RETURN_IF_ERROR(Check(std::fwrite(line_.data(), 1, line_.size(), file_) == line_.size(),
                        "writing"));
  ++next_seq_;
  return true;
}

Status TraceWriter::Finish(uint64_t device_size_bytes, uint64_t duration_ns) {
  if (!file_) return error_.ok() ? Status::InvalidArgument("trace writer not open") : error_;
  std::string tail = fmt::format("\n],\"device_size_bytes\":{},\"duration_ns\":{}}}\n",
                                 device_size_bytes, duration_ns);
  (void)Check(std::fwrite(tail.data(), 1, tail.size(), file_) == tail.size(), "writing");
  (void)Check(std::fflush(file_) == 0, "flushing");
  (void)Check(std::fclose(file_) == 0, "closing");
  file_ = nullptr;
  return error_;
}

}  // namespace portal::trace
