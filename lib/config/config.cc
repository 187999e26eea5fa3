#include "config/config.h"

#include <bit>
#include <charconv>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "nbd/server.h"

namespace portal::config {
namespace {

// Keys the original portalbd accepted that have no meaning here.
const std::set<std::string> kIgnoredKeys = {
    "lsm.l0_max_ssts", "lsm.filter_bits_per_key", "lsm.compression_codec",
    "lsm.sst_block_size"};

class Reader {
 public:
  Reader(const toml::table& root, std::string_view source) : root_(root), source_(source) {}

  Status Error(const std::string& key, const std::string& what) const {
    return Status::InvalidArgument(fmt::format("{}: {} {}", source_, key, what));
  }

  // Whether a key also takes a size string ("64MiB"): only keys counted in bytes. Any
  // other unit (disk_size_gb is in GiB, flush_interval_ms in ms) takes plain integers,
  // so that "1GiB" can never silently mean 2^30 of the key's own unit.
  enum class Unit { kCount, kBytes };

  // Reads an unsigned integer key if present.
  Status U64(const toml::table& t, const std::string& table, const char* name, uint64_t* out,
             Unit unit = Unit::kCount) {
    const toml::node* n = t.get(name);
    if (!n) return Status::Ok();
    std::string key = Qualified(table, name);
    if (auto v = n->value_exact<int64_t>()) {
      if (*v < 0) return Error(key, fmt::format("must not be negative (got {})", *v));
      *out = static_cast<uint64_t>(*v);
      return Status::Ok();
    }
    if (unit == Unit::kCount) return Error(key, "must be an integer");
    if (auto s = n->value_exact<std::string>()) {  // "64MiB" is friendlier than 67108864
      auto size = ParseSize(*s);
      if (!size.ok()) return Error(key, "must be an integer or a size like \"64MiB\"");
      *out = *size;
      return Status::Ok();
    }
    return Error(key, "must be an integer or a size like \"64MiB\"");
  }

  // Validate() checks the value again with the other bounds; `max` here only keeps the
  // narrowing from wrapping.
  Status U32(const toml::table& t, const std::string& table, const char* name, uint32_t max,
             uint32_t* out, Unit unit = Unit::kCount) {
    uint64_t v = *out;
    RETURN_IF_ERROR(U64(t, table, name, &v, unit));
    if (v > max) {
      return Error(Qualified(table, name), fmt::format("must be at most {}, got {}", max, v));
    }
    *out = static_cast<uint32_t>(v);
    return Status::Ok();
  }

  Status Str(const toml::table& t, const std::string& table, const char* name, std::string* out) {
    const toml::node* n = t.get(name);
    if (!n) return Status::Ok();
    auto v = n->value_exact<std::string>();
    if (!v) return Error(Qualified(table, name), "must be a string");
    // No key means anything by "": an empty value (an unset variable in a templated file)
    // would otherwise fall back to a default, as socket = "" did.
    if (v->empty()) return Error(Qualified(table, name), "must not be empty");
    *out = *v;
    return Status::Ok();
  }

  Status StrArray(const toml::table& t, const std::string& table, const char* name,
                  std::vector<std::string>* out) {
    const toml::node* n = t.get(name);
    if (!n) return Status::Ok();
    const toml::array* a = n->as_array();
    if (!a) return Error(Qualified(table, name), "must be an array of strings");
    out->clear();
    for (const toml::node& e : *a) {
      auto v = e.value_exact<std::string>();
      if (!v || v->empty()) return Error(Qualified(table, name), "must hold non-empty strings");
      out->push_back(*v);
    }
    return Status::Ok();
  }

  Status Bool(const toml::table& t, const std::string& table, const char* name, bool* out) {
    const toml::node* n = t.get(name);
    if (!n) return Status::Ok();
    auto v = n->value_exact<bool>();
    if (!v) return Error(Qualified(table, name), "must be true or false");
    *out = *v;
    return Status::Ok();
  }

  Status Double(const toml::table& t, const std::string& table, const char* name, double* out) {
    const toml::node* n = t.get(name);
    if (!n) return Status::Ok();
    if (auto v = n->value_exact<double>()) {
      *out = *v;
    } else if (auto i = n->value_exact<int64_t>()) {
      *out = static_cast<double>(*i);
    } else {
      return Error(Qualified(table, name), "must be a number");
    }
    return Status::Ok();
  }

  static std::string Qualified(const std::string& table, const char* name) {
    return table.empty() ? std::string(name) : table + "." + name;
  }

 private:
  const toml::table& root_;
  std::string_view source_;
};

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || p == text.data()) {
    return Status::InvalidArgument("bad size '" + std::string(text) + "'");
  }
  std::string_view suffix(p, text.data() + text.size() - p);
  static const std::pair<std::string_view, int> kUnits[] = {
      {"", 0},     {"B", 0},    {"K", 10},   {"KiB", 10}, {"M", 20}, {"MiB", 20},
      {"G", 30},   {"GiB", 30}, {"T", 40},   {"TiB", 40}, {"P", 50}, {"PiB", 50},
      {"E", 60},   {"EiB", 60}};
  for (const auto& [name, shift] : kUnits) {
    if (suffix == name) {
      if (shift > 0 && value > (UINT64_MAX >> shift)) {
        return Status::InvalidArgument("size '" + std::string(text) + "' overflows");
      }
      return value << shift;
    }
  }
  return Status::InvalidArgument("bad size suffix in '" + std::string(text) +
                                 "' (use K, M, G, T, P, E or KiB ... EiB)");
}

Result<Config> ParseToml(std::string_view text, std::string_view source, const Config& base,
                         std::vector<std::string>* warnings) {
  // toml++ recurses per dotted key part and nesting level: refuse deep text first.
  RETURN_IF_ERROR(CheckTomlShape(text, source));
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::InvalidArgument(fmt::format("{}:{}:{}: {}", source, where.line,
                                               where.column, e.description()));
  }

  Config c = base;
  Reader r(root, source);
  static const std::set<std::string> kTables = {"device", "storage", "nbd", "lsm", "record",
                                                "log", "cache", "metrics", "control"};
  static const std::map<std::string, std::set<std::string>> kKeys = {
      {"device",
       {"disk_size_gb", "block_size", "state_file", "io_timeout_ms", "reattach_timeout_ms"}},
      {"storage",
       {"url", "cache_dir", "unsafe_no_fencing", "stop_timeout_ms", "encryption_key_file",
        "encryption_old_key_files", "ca_file", "volumes"}},
      {"nbd",
       {"address", "socket", "max_connections", "tls", "tls_cert", "tls_key", "tls_ca",
        "tls_psk_file", "max_inflight_bytes", "handshake_timeout_ms", "request_timeout_ms",
        "idle_timeout_ms"}},
      {"control", {"socket_group"}},
      {"lsm",
       {"flush_interval_ms", "l0_sst_size_bytes", "max_unflushed_bytes",
        "block_cache_size_bytes", "gc_live_ratio", "gc_grace_ms", "gc_interval_ms",
        "upload_window"}},
      {"record", {"path", "workload"}},
      {"log", {"format"}},
      {"cache", {"dir", "disk_size_bytes", "read_ahead_max_bytes"}},
      {"metrics", {"address"}},
  };

  // Unknown keys first, so a typo is reported even if other values are fine.
  for (const auto& [k, node] : root) {
    std::string key(k.str());
    if (key == "socket") {
      if (!node.is_string()) return r.Error("socket", "must be a string");
      continue;
    }
    if (!kTables.count(key)) {
      if (kIgnoredKeys.count(key)) continue;
      return r.Error(key, "is not a known configuration key");
    }
    if (!node.is_table()) return r.Error(key, "must be a table ([" + key + "])");
    for (const auto& [sub, subnode] : *node.as_table()) {
      std::string full = key + "." + std::string(sub.str());
      if (kKeys.at(key).count(std::string(sub.str()))) continue;
      if (kIgnoredKeys.count(full)) {
        warnings->push_back(fmt::format(
            "{}: {} is a setting of the original portalbd that portalbd does not use; "
            "ignored",
            source, full));
        continue;
      }
      return r.Error(full, "is not a known configuration key");
    }
  }

  auto table = [&](const char* name) -> const toml::table& {
    static const toml::table kEmpty;
    const toml::table* t = root[name].as_table();
    return t ? *t : kEmpty;
  };

  RETURN_IF_ERROR(r.U64(table("device"), "device", "disk_size_gb", &c.disk_size_gb));
  if (table("device").contains("disk_size_gb")) c.disk_size_set = true;
  RETURN_IF_ERROR(r.U32(table("device"), "device", "block_size", kMaxBlockSize, &c.block_size,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.Str(table("device"), "device", "state_file", &c.device_state_file));
  RETURN_IF_ERROR(
      r.U64(table("device"), "device", "io_timeout_ms", &c.device_io_timeout_ms));
  RETURN_IF_ERROR(r.U64(table("device"), "device", "reattach_timeout_ms",
                        &c.device_reattach_timeout_ms));
  RETURN_IF_ERROR(r.Str(table("storage"), "storage", "url", &c.storage_url));
  RETURN_IF_ERROR(r.Str(table("storage"), "storage", "cache_dir", &c.cache_dir));
  RETURN_IF_ERROR(
      r.Bool(table("storage"), "storage", "unsafe_no_fencing", &c.unsafe_no_fencing));
  RETURN_IF_ERROR(r.U64(table("storage"), "storage", "stop_timeout_ms", &c.stop_timeout_ms));
  RETURN_IF_ERROR(
      r.Str(table("storage"), "storage", "encryption_key_file", &c.encryption_key_file));
  RETURN_IF_ERROR(r.StrArray(table("storage"), "storage", "encryption_old_key_files",
                             &c.encryption_old_key_files));
  RETURN_IF_ERROR(r.Str(table("storage"), "storage", "ca_file", &c.ca_file));
  if (const toml::node* n = table("storage").get("volumes")) {
    if (auto all = n->value_exact<std::string>()) {
      if (*all != "all") return r.Error("storage.volumes", "must be \"all\" or a list of names");
      c.volumes.reset();
    } else if (const toml::array* list = n->as_array()) {
      c.volumes.emplace();
      for (const toml::node& item : *list) {
        auto name = item.value_exact<std::string>();
        if (!name) return r.Error("storage.volumes", "must be \"all\" or a list of names");
        c.volumes->push_back(*name);
      }
    } else {
      return r.Error("storage.volumes", "must be \"all\" or a list of names");
    }
  }
  RETURN_IF_ERROR(r.Str(table("nbd"), "nbd", "address", &c.address));
  RETURN_IF_ERROR(r.U64(table("nbd"), "nbd", "max_inflight_bytes", &c.max_inflight_bytes,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(
      r.U64(table("nbd"), "nbd", "handshake_timeout_ms", &c.handshake_timeout_ms));
  RETURN_IF_ERROR(r.U64(table("nbd"), "nbd", "request_timeout_ms", &c.request_timeout_ms));
  RETURN_IF_ERROR(r.U64(table("nbd"), "nbd", "idle_timeout_ms", &c.idle_timeout_ms));
  RETURN_IF_ERROR(
      r.Str(table("control"), "control", "socket_group", &c.control_socket_group));
  RETURN_IF_ERROR(
      r.U32(table("nbd"), "nbd", "max_connections", kMaxConnections, &c.max_connections));
  for (auto [name, out] : {std::pair{"tls", &c.tls}, std::pair{"tls_cert", &c.tls_cert},
                           std::pair{"tls_key", &c.tls_key}, std::pair{"tls_ca", &c.tls_ca},
                           std::pair{"tls_psk_file", &c.tls_psk_file}}) {
    RETURN_IF_ERROR(r.Str(table("nbd"), "nbd", name, out));
  }
  std::string top_socket, nbd_socket;
  RETURN_IF_ERROR(r.Str(root, "", "socket", &top_socket));
  RETURN_IF_ERROR(r.Str(table("nbd"), "nbd", "socket", &nbd_socket));
  if (!top_socket.empty() && !nbd_socket.empty() && top_socket != nbd_socket) {
    return r.Error("socket", "and nbd.socket are both set, to different paths");
  }
  if (!nbd_socket.empty()) c.socket = nbd_socket;
  if (!top_socket.empty()) c.socket = top_socket;
  RETURN_IF_ERROR(r.U64(table("lsm"), "lsm", "flush_interval_ms", &c.flush_interval_ms));
  RETURN_IF_ERROR(
      r.U64(table("lsm"), "lsm", "l0_sst_size_bytes", &c.l0_sst_size_bytes, Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.U64(table("lsm"), "lsm", "max_unflushed_bytes", &c.max_unflushed_bytes,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.U64(table("lsm"), "lsm", "block_cache_size_bytes", &c.block_cache_size_bytes,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.Double(table("lsm"), "lsm", "gc_live_ratio", &c.gc_live_ratio));
  RETURN_IF_ERROR(r.U64(table("lsm"), "lsm", "upload_window", &c.upload_window));
  for (auto [name, out] : {std::pair{"gc_grace_ms", &c.gc_grace_ms},
                           std::pair{"gc_interval_ms", &c.gc_interval_ms}}) {
    uint64_t v = UINT64_MAX;
    RETURN_IF_ERROR(r.U64(table("lsm"), "lsm", name, &v));
    if (v != UINT64_MAX) *out = v;
  }
  RETURN_IF_ERROR(r.Str(table("cache"), "cache", "dir", &c.disk_cache_dir));
  RETURN_IF_ERROR(r.U64(table("cache"), "cache", "disk_size_bytes", &c.disk_cache_size_bytes,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.U64(table("cache"), "cache", "read_ahead_max_bytes", &c.read_ahead_max_bytes,
                        Reader::Unit::kBytes));
  RETURN_IF_ERROR(r.Str(table("record"), "record", "path", &c.record_path));
  RETURN_IF_ERROR(r.Str(table("record"), "record", "workload", &c.record_workload));
  if (root.contains("record") && c.record_path.empty()) {
    return r.Error("record.path", "is required when [record] is present");
  }
  RETURN_IF_ERROR(r.Str(table("log"), "log", "format", &c.log_format));
  RETURN_IF_ERROR(r.Str(table("metrics"), "metrics", "address", &c.metrics_address));
  return c;
}

Result<Config> LoadFile(const std::string& path, const Config& base,
                        std::vector<std::string>* warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read config file " + path);
  // One byte more than allowed is enough for ParseToml to refuse the size.
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Status::IOError("cannot read config file " + path);
  text.resize(static_cast<size_t>(in.gcount()));
  return ParseToml(text, path, base, warnings);
}

namespace {

Status Bad(const char* key, const std::string& why) {
  return Status::InvalidArgument(fmt::format("{} {}", key, why));
}

// "lsm.gc_interval_ms must be at most 86400000 (1 day), got 10000000000000"; `max_text`
// says the bound in words ("" if the number says it well enough).
Status InRange(const char* key, uint64_t value, uint64_t min, uint64_t max,
               std::string_view max_text) {
  if (value < min) return Bad(key, fmt::format("must be at least {}, got {}", min, value));
  if (value > max) {
    return Bad(key, fmt::format("must be at most {}{}, got {}", max,
                                max_text.empty() ? "" : fmt::format(" ({})", max_text), value));
  }
  return Status::Ok();
}

}  // namespace

Status Validate(const Config& c) {
  RETURN_IF_ERROR(
      InRange("device.disk_size_gb", c.disk_size_gb, 1, kMaxDiskSizeGb, "8 EiB - 1 GiB"));
  if (!std::has_single_bit(c.block_size) || c.block_size < kMinBlockSize ||
      c.block_size > kMaxBlockSize) {
    return Bad("device.block_size",
               fmt::format("must be a power of two from {} to {}, got {}", kMinBlockSize,
                           kMaxBlockSize, c.block_size));
  }
  const std::string& url = c.storage_url;
  if (url != "memory://" && !url.starts_with("file:///") && !url.starts_with("s3://")) {
    return Bad("storage.url", "must be memory://, file:///absolute/path or s3://bucket/prefix "
                              "(got '" + url + "')");
  }
  if (url.starts_with("s3://") && (url.size() == 5 || url[5] == '/')) {
    return Bad("storage.url", "names no bucket: '" + url + "'");
  }
  if (c.volumes) {
    std::set<std::string_view> seen;
    for (const std::string& name : *c.volumes) {
      if (name.empty()) return Bad("storage.volumes", "holds an empty name");
      if (!seen.insert(name).second) {
        return Bad("storage.volumes", "names '" + name + "' twice");
      }
    }
  }
  if (auto a = nbd::ParseListenAddress(c.address); !a.ok()) {
    return Bad("nbd.address", a.status().message());
  }
  auto tls = nbd::ParseTlsMode(c.tls);
  if (!tls.ok()) return Bad("nbd.tls", tls.status().message());
  if (*tls == nbd::TlsMode::kOff) {
    for (auto [key, value] :
         {std::pair{"nbd.tls_cert", &c.tls_cert}, std::pair{"nbd.tls_key", &c.tls_key},
          std::pair{"nbd.tls_ca", &c.tls_ca}, std::pair{"nbd.tls_psk_file", &c.tls_psk_file}}) {
      // Credentials with TLS off would read as protected and be plaintext.
      if (!value->empty()) {
        return Bad(key, "is set but nbd.tls is \"off\" (set tls = \"on\" or \"require\")");
      }
    }
  }
  if (c.socket.empty() || c.socket[0] != '/') {
    return Bad("nbd.socket", "must be an absolute path (got '" + c.socket + "')");
  }
  RETURN_IF_ERROR(
      InRange("nbd.max_connections", c.max_connections, 1, kMaxConnections, ""));
  RETURN_IF_ERROR(InRange("nbd.max_inflight_bytes", c.max_inflight_bytes, kMinBufferBytes,
                          kMaxNbdInflightBytes, "64 GiB"));
  RETURN_IF_ERROR(InRange("nbd.handshake_timeout_ms", c.handshake_timeout_ms, kMinNbdTimeoutMs,
                          kMaxNbdTimeoutMs, "1 hour"));
  RETURN_IF_ERROR(InRange("nbd.request_timeout_ms", c.request_timeout_ms, kMinNbdTimeoutMs,
                          kMaxNbdTimeoutMs, "1 hour"));
  if (c.idle_timeout_ms != 0) {
    RETURN_IF_ERROR(InRange("nbd.idle_timeout_ms", c.idle_timeout_ms, kMinIdleTimeoutMs,
                            kMaxIdleTimeoutMs, "7 days"));
  }
  RETURN_IF_ERROR(
      InRange("lsm.flush_interval_ms", c.flush_interval_ms, 0, kMaxIntervalMs, "1 day"));
  RETURN_IF_ERROR(InRange("lsm.l0_sst_size_bytes", c.l0_sst_size_bytes, kMinBufferBytes,
                          kMaxL0SstSizeBytes, "1 GiB"));
  RETURN_IF_ERROR(InRange("lsm.max_unflushed_bytes", c.max_unflushed_bytes, 0,
                          kMaxUnflushedBytes, "64 GiB"));
  if (c.max_unflushed_bytes < c.l0_sst_size_bytes) {
    return Bad("lsm.max_unflushed_bytes", "must be >= lsm.l0_sst_size_bytes");
  }
  RETURN_IF_ERROR(InRange("lsm.upload_window", c.upload_window, 1, kMaxUploadWindow, ""));
  RETURN_IF_ERROR(InRange("lsm.block_cache_size_bytes", c.block_cache_size_bytes,
                          kMinBufferBytes, kMaxBlockCacheSizeBytes, "1 TiB"));
  RETURN_IF_ERROR(InRange("cache.read_ahead_max_bytes", c.read_ahead_max_bytes, 0,
                          kMaxReadAheadBytes, "16 GiB"));
  if (!(c.gc_live_ratio >= 0.0 && c.gc_live_ratio <= 1.0)) {  // NaN too
    return Bad("lsm.gc_live_ratio",
               fmt::format("must be between 0 and 1, got {}", c.gc_live_ratio));
  }
  // A grace period covers reads that resolved a block just before GC found its segment
  // dead; the interval paces GC's listing and HEAD requests.
  if (c.gc_grace_ms) {
    RETURN_IF_ERROR(
        InRange("lsm.gc_grace_ms", *c.gc_grace_ms, kMinGcGraceMs, kMaxGcGraceMs, "7 days"));
  }
  if (c.gc_interval_ms) {
    RETURN_IF_ERROR(InRange("lsm.gc_interval_ms", *c.gc_interval_ms, kMinGcIntervalMs,
                            kMaxIntervalMs, "1 day"));
  }
  if (c.cache_dir.empty()) return Bad("storage.cache_dir", "must not be empty");
  if (c.encryption_key_file.empty() && !c.encryption_old_key_files.empty()) {
    return Bad("storage.encryption_old_key_files", "needs storage.encryption_key_file");
  }
  if (c.log_format != "text" && c.log_format != "json") {
    return Bad("log.format", fmt::format("must be \"text\" or \"json\", got \"{}\"", c.log_format));
  }
  RETURN_IF_ERROR(InRange("cache.disk_size_bytes", c.disk_cache_size_bytes, 0,
                          kMaxDiskCacheSizeBytes, "1 PiB"));
  if (c.disk_cache_size_bytes > 0 && c.disk_cache_size_bytes < kMinBufferBytes) {
    return Bad("cache.disk_size_bytes",
               fmt::format("must be 0 (off) or at least {}, got {}", kMinBufferBytes,
                           c.disk_cache_size_bytes));
  }
  RETURN_IF_ERROR(InRange("device.io_timeout_ms", c.device_io_timeout_ms, kMinDeviceTimeoutMs,
                          kMaxDeviceIoTimeoutMs, "1 hour"));
  if (c.device_reattach_timeout_ms != 0) {
    RETURN_IF_ERROR(InRange("device.reattach_timeout_ms", c.device_reattach_timeout_ms,
                            kMinDeviceTimeoutMs, kMaxReattachTimeoutMs, "1 day"));
  }
  if (c.device_state_file.empty() || c.device_state_file[0] != '/') {
    return Bad("device.state_file",
               "must be an absolute path, got '" + c.device_state_file + "'");
  }
  RETURN_IF_ERROR(InRange("storage.stop_timeout_ms", c.stop_timeout_ms, kMinStopTimeoutMs,
                          kMaxStopTimeoutMs, "1 hour"));
  if (!c.metrics_address.empty()) {  // HTTP: an IP address and port, not a unix socket
    auto a = nbd::ParseListenAddress(c.metrics_address);
    if (!a.ok() || a->is_unix) {
      return Bad("metrics.address",
                 "must be IP:PORT (e.g. \"127.0.0.1:9109\"), got '" + c.metrics_address + "'");
    }
  }
  return Status::Ok();
}

}  // namespace portal::config
