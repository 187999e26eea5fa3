// portalbd's configuration: TOML compatible with the original portalbd's files, merged
// with command-line flags (flags win), validated with errors that name the key.
//
//   [device]  disk_size_gb (GiB = 2^30 bytes), block_size
//   [storage] url (memory:// | file:///path | s3://bucket/prefix), cache_dir,
//             unsafe_no_fencing, stop_timeout_ms
//   [nbd]     address (HOST:PORT | unix:/path), socket (control socket), max_connections
//   socket    top-level control socket key, as the original's code reads it
//   [lsm]     flush_interval_ms, l0_sst_size_bytes, max_unflushed_bytes,
//             block_cache_size_bytes, gc_live_ratio, gc_grace_ms, gc_interval_ms
//   [record]  path, workload
//
// Byte-valued keys (block_size, *_bytes) also take size strings ("64MiB"); every other
// integer key takes integers only.
//
// Keys the original accepted that portalbd does not use (lsm.l0_max_ssts,
// lsm.filter_bits_per_key, lsm.compression_codec, lsm.sst_block_size) produce a warning
// naming them; any other unknown key or a bad value is an InvalidArgument error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::config {

struct Config {
  // [device]
  uint64_t disk_size_gb = 1;
  bool disk_size_set = false;  // given in the file or by flag (else an existing volume
                               // keeps its size; a new one gets disk_size_gb)
  uint32_t block_size = 4096;
  // [storage]
  std::string storage_url = "memory://";
  std::string cache_dir = "/var/lib/portalbd";
  bool unsafe_no_fencing = false;
  // How long SIGTERM/SIGINT waits for in-flight requests and the final FLUSH before
  // giving up on what is not yet durable (and exiting 1).
  uint64_t stop_timeout_ms = 60'000;
  // [nbd]
  std::string address = "127.0.0.1:10809";
  std::string socket = "/run/portalbd/portalbd.sock";
  uint32_t max_connections = 64;
  // [lsm]
  uint64_t flush_interval_ms = 1000;
  uint64_t l0_sst_size_bytes = 64ull << 20;
  uint64_t max_unflushed_bytes = 256ull << 20;
  uint64_t block_cache_size_bytes = 256ull << 20;
  double gc_live_ratio = 0.5;
  // Unset: the volume's defaults (10 min and 10 s; on memory:// segments are freed at once
  // and GC runs every second).
  std::optional<uint64_t> gc_grace_ms;
  std::optional<uint64_t> gc_interval_ms;
  // [record]
  std::string record_path;  // empty: not recording
  std::string record_workload = "unnamed";

  uint64_t size_bytes() const { return disk_size_gb << 30; }
};

// Bounds of [storage] stop_timeout_ms: 1 s to 1 h.
constexpr uint64_t kMinStopTimeoutMs = 1000;
constexpr uint64_t kMaxStopTimeoutMs = 3600'000;

// The largest device: 8 EiB - 1 GiB, so that every byte offset fits in 63 bits.
constexpr uint64_t kMaxDiskSizeGb = (1ull << 33) - 1;

// Parses TOML text on top of `base`. `source` names the file in messages. Warnings for
// ignored keys are appended to `warnings`.
Result<Config> ParseToml(std::string_view text, std::string_view source, const Config& base,
                         std::vector<std::string>* warnings);
Result<Config> LoadFile(const std::string& path, const Config& base,
                        std::vector<std::string>* warnings);

// Checks every value; the message names the key ("device.disk_size_gb must be ...").
Status Validate(const Config& c);

// Parses a size with an optional binary suffix: "4096", "64MiB", "1GiB", "256M".
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace portal::config
