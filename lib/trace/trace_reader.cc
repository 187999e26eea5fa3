#include "trace/trace_reader.h"

#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace portal::trace {
namespace {

using nlohmann::json;

const char* KindName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer: return v.get<int64_t>() < 0 ? "negative integer"
                                                                     : "integer";
    case json::value_t::number_unsigned: return "unsigned integer";
    case json::value_t::number_float: return "number with a fraction";
    default: return "unknown value";
  }
}

// Collects the first error; `path` is the field's location ("ops[3].op.length").
class Checker {
 public:
  explicit Checker(std::string_view source) : source_(source) {}

  bool Fail(std::string_view path, std::string_view what) {
    if (error_.ok()) {
      error_ = Status::InvalidArgument(fmt::format("{}: {}: {}", source_, path, what));
    }
    return false;
  }

  const json* Field(const json& obj, std::string_view path, const char* key, bool required) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) Fail(Join(path, key), "missing");
      return nullptr;
    }
    return &*it;
  }

  bool U64(const json& obj, std::string_view path, const char* key, uint64_t* out,
           bool required = true, uint64_t max = std::numeric_limits<uint64_t>::max()) {
    const json* v = Field(obj, path, key, required);
    if (!v) return !required;
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0)) {
      return Fail(Join(path, key), fmt::format("expected an unsigned integer, got {}",
                                               KindName(*v)));
    }
    *out = v->get<uint64_t>();
    if (*out > max) {
      return Fail(Join(path, key), fmt::format("{} is larger than {}", *out, max));
    }
    return true;
  }

  bool String(const json& obj, std::string_view path, const char* key, std::string* out) {
    const json* v = Field(obj, path, key, true);
    if (!v) return false;
    if (!v->is_string()) {
      return Fail(Join(path, key), fmt::format("expected a string, got {}", KindName(*v)));
    }
    *out = v->get<std::string>();
    return true;
  }

  bool Bool(const json& obj, std::string_view path, const char* key, bool* out) {
    const json* v = Field(obj, path, key, true);
    if (!v) return false;
    if (!v->is_boolean()) {
      return Fail(Join(path, key), fmt::format("expected true or false, got {}", KindName(*v)));
    }
    *out = v->get<bool>();
    return true;
  }

  static std::string Join(std::string_view path, std::string_view key) {
    if (path.empty()) return std::string(key);
    return fmt::format("{}.{}", path, key);
  }

  Status status() const { return error_; }

 private:
  std::string_view source_;
  Status error_;
};

bool ParseOp(Checker& c, const json& j, size_t index, uint64_t device_size, TraceOp* op) {
  std::string path = fmt::format("ops[{}]", index);
  if (!j.is_object()) {
    return c.Fail(path, fmt::format("expected an object, got {}", KindName(j)));
  }
  if (!c.U64(j, path, "seq", &op->seq) || !c.U64(j, path, "timestamp_ns", &op->timestamp_ns) ||
      !c.U64(j, path, "duration_ns", &op->duration_ns) || !c.Bool(j, path, "success", &op->success)) {
    return false;
  }
  const json* o = c.Field(j, path, "op", true);
  if (!o) return false;
  std::string op_path = path + ".op";
  if (!o->is_object()) {
    return c.Fail(op_path, fmt::format("expected an object, got {}", KindName(*o)));
  }
  std::string type_name;
  if (!c.String(*o, op_path, "type", &type_name)) return false;
  auto type = OpTypeFromName(type_name);
  if (!type) {
    return c.Fail(op_path + ".type", fmt::format("unknown op type \"{}\" (expected Read, Write, "
                                                 "Trim, WriteZeroes, Flush, BlockStatus or Cache)",
                                                 type_name));
  }
  op->type = *type;
  if (HasRange(op->type)) {
    // The original stores Read/Write lengths as u32: larger ones cannot be NBD requests.
    uint64_t max_len = (op->type == OpType::kRead || op->type == OpType::kWrite)
                           ? std::numeric_limits<uint32_t>::max()
                           : std::numeric_limits<uint64_t>::max();
    if (!c.U64(*o, op_path, "offset", &op->offset) ||
        !c.U64(*o, op_path, "length", &op->length, true, max_len)) {
      return false;
    }
    if (op->success && (op->offset > device_size || op->length > device_size - op->offset)) {
      return c.Fail(op_path, fmt::format("successful {} of [{}, +{}) lies beyond "
                                         "device_size_bytes {}",
                                         type_name, op->offset, op->length, device_size));
    }
  }
  uint64_t conn = 0;
  if (!c.U64(j, path, "conn", &conn, false, std::numeric_limits<uint32_t>::max())) return false;
  op->conn = static_cast<uint32_t>(conn);
  if (j.contains("start_ns")) {
    uint64_t start = 0;
    if (!c.U64(j, path, "start_ns", &start)) return false;
    if (start > op->timestamp_ns) {
      return c.Fail(path + ".start_ns", fmt::format("{} is after timestamp_ns {} (the completion)",
                                                    start, op->timestamp_ns));
    }
    op->start_ns = start;
  }
  if (const json* f = c.Field(j, path, "flags", false)) {
    std::string fpath = path + ".flags";
    if (!f->is_array()) {
      return c.Fail(fpath, fmt::format("expected an array of flag names, got {}", KindName(*f)));
    }
    for (size_t i = 0; i < f->size(); ++i) {
      const json& name = (*f)[i];
      auto bit = name.is_string() ? OpFlagFromName(name.get<std::string>()) : std::nullopt;
      if (!bit) {
        return c.Fail(fmt::format("{}[{}]", fpath, i),
                      fmt::format("unknown flag {} (expected FUA, NO_HOLE, DF, REQ_ONE or "
                                  "FAST_ZERO)", name.dump()));
      }
      op->flags |= *bit;
    }
  }
  return true;
}

}  // namespace

Result<Trace> ParseTrace(std::string_view text, std::string_view source) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 4, column 17:
    // syntax error ..."; keep the part after the bracket.
    std::string what = e.what();
    size_t cut = what.find("] ");
    return Status::InvalidArgument(fmt::format(
        "{}: not valid JSON: {}", source, cut == std::string::npos ? what : what.substr(cut + 2)));
  }
  Checker c(source);
  Trace t;
  if (!doc.is_object()) {
    (void)c.Fail("(top level)", fmt::format("expected an object, got {}", KindName(doc)));
    return c.status();
  }
  if (!c.String(doc, "", "workload", &t.workload) ||
      !c.U64(doc, "", "device_size_bytes", &t.device_size_bytes) ||
      !c.String(doc, "", "start_time", &t.start_time) ||
      !c.U64(doc, "", "duration_ns", &t.duration_ns)) {
    return c.status();
  }
  if (!LooksLikeRfc3339(t.start_time)) {
    (void)c.Fail("start_time", fmt::format("\"{}\" is not an RFC 3339 timestamp", t.start_time));
    return c.status();
  }
  const json* ops = c.Field(doc, "", "ops", true);
  if (!ops) return c.status();
  if (!ops->is_array()) {
    (void)c.Fail("ops", fmt::format("expected an array, got {}", KindName(*ops)));
    return c.status();
  }
  t.ops.resize(ops->size());
  for (size_t i = 0; i < ops->size(); ++i) {
    if (!ParseOp(c, (*ops)[i], i, t.device_size_bytes, &t.ops[i])) return c.status();
  }
  return t;
}

Result<Trace> LoadTrace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open trace " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read trace " + path);
  return ParseTrace(ss.str(), path);
}

}  // namespace portal::trace
