// portalbd's configuration: TOML compatible with the original portalbd's files, merged
// with command-line flags (flags win), validated with errors that name the key.
//
//   [device]  disk_size_gb (GiB = 2^30 bytes), block_size; for kernel devices the daemon
//             attaches itself (portalctl device attach, docs/devices.md): state_file,
//             io_timeout_ms (the kernel's per-request timeout: a request unanswered that
//             long is sent again on the next connection), reattach_timeout_ms (how long the
//             kernel queues I/O while no daemon serves the device; 0: fail it at once, and
//             do not reattach at start)
//   [storage] url (memory:// | file:///path | s3://bucket/prefix), cache_dir,
//             unsafe_no_fencing, stop_timeout_ms, encryption_key_file (a file holding a
//             32-byte key, raw or as 64 hex digits: every object holding block data or
//             block addresses is encrypted with AES-256-GCM; docs/volume.md "Encryption"),
//             encryption_old_key_files (array: keys that only decrypt, for rotation),
//             ca_file (PEM CAs for https:// endpoints; else AWS_CA_BUNDLE; else the system's),
//             volumes ("all", the default: the default volume and every registered one;
//             or a list of names, "portalbd" naming the default volume: only those.
//             docs/volumes.md)
//   [nbd]     address (HOST:PORT | unix:/path), socket (control socket), max_connections,
//             tls ("off" | "on" | "require": NBD_OPT_STARTTLS, nbd/handshake.h), tls_cert,
//             tls_key (PEM), tls_ca (clients must present a certificate it signed),
//             tls_psk_file (psktool's identity:hexkey lines); see nbd/tls.h;
//             max_inflight_bytes (READ/WRITE payload in flight over all connections),
//             handshake_timeout_ms, request_timeout_ms (a request's payload must arrive,
//             and a reply be taken, within it), idle_timeout_ms (0: off)
//   [control] socket_group (group given read/write access to the control socket);
//             listen (HOST:PORT: the control protocol over TCP for the CSI controller;
//             unset: off), token_file (required with listen: the shared secret, at least
//             32 printable bytes, not world-readable), tls_cert, tls_key (PEM: TLS on the
//             listener), node_id (owner and node records' "node"; default the host
//             name; the volume-name rule, daemon/attachments.h: the daemon registers
//             itself as nodes/<node_id>.json at start), advertise (owner and node
//             records' "control"; default the listen address).
//             docs/csi.md "How the controller reaches a volume's owner"
//   socket    top-level control socket key, as the original's code reads it
//   [lsm]     flush_interval_ms, l0_sst_size_bytes, max_unflushed_bytes,
//             block_cache_size_bytes, gc_live_ratio, gc_grace_ms, gc_interval_ms,
//             upload_window (segment uploads in flight, 1 to 64, default 8: ids are
//             uploaded in a window of this many past the last settled one and
//             acknowledged in id order; 1 = one at a time. No multipart uploads: Ceph RGW
//             16.2's completion ignores If-None-Match, so a part upload could not be fenced)
//   [record]  path, workload
//   [log]     format ("text" | "json": one JSON object per line, util/log.h)
//   [cache]   dir, disk_size_bytes (the local disk cache of chunks: off while
//             disk_size_bytes is 0, the default; dir defaults to <storage.cache_dir>/chunks),
//             read_ahead_max_bytes (read-ahead GET bytes in flight at once; 0: none)
//   [metrics] address (HOST:PORT: Prometheus text format at /metrics; unset: off)
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

#include "config/toml_guard.h"
#include "util/status.h"

namespace portal::config {

struct Config {
  // [device]
  uint64_t disk_size_gb = 1;
  bool disk_size_set = false;  // given in the file or by flag (else an existing volume
                               // keeps its size; a new one gets disk_size_gb)
  uint32_t block_size = 4096;
  // Kernel NBD devices attached by the daemon (docs/devices.md). The kernel counts its
  // timeouts in whole seconds: both are rounded up.
  std::string device_state_file = "/var/lib/portalbd/devices.json";
  uint64_t device_io_timeout_ms = 30'000;
  uint64_t device_reattach_timeout_ms = 120'000;
  // [storage]
  std::string storage_url = "memory://";
  std::string cache_dir = "/var/lib/portalbd";
  bool unsafe_no_fencing = false;
  // Encryption at rest: "" = off. Old key files only decrypt (objects written before a
  // rotation stay readable until GC or compaction rewrites them).
  std::string encryption_key_file;
  std::vector<std::string> encryption_old_key_files;
  // How long SIGTERM/SIGINT waits for in-flight requests and the final FLUSH before
  // giving up on what is not yet durable (and exiting 1).
  uint64_t stop_timeout_ms = 60'000;
  // PEM file of the CAs to trust for an https:// S3 endpoint; wins over AWS_CA_BUNDLE.
  std::string ca_file;
  // The volumes to serve (docs/volumes.md). Unset ("all"): the default volume and every
  // volume in the registry. A list: exactly those ("portalbd" is the default volume);
  // names are judged by the daemon (volume::ValidateVolumeName).
  std::optional<std::vector<std::string>> volumes;
  // [nbd]
  std::string address = "127.0.0.1:10809";
  std::string socket = "/run/portalbd/portalbd.sock";
  uint32_t max_connections = 64;
  // "off", "on" (STARTTLS offered, plaintext allowed) or "require" (no option but
  // STARTTLS before TLS). The files are checked when portalbd starts (nbd/tls.h).
  std::string tls = "off";
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_psk_file;
  // READ and WRITE payload bytes held at once over all NBD connections (each connection
  // also has its own 128 MiB bound): past it, connections stop reading requests until
  // replies drain. 1 GiB: eight connections at their own bound.
  uint64_t max_inflight_bytes = 1ull << 30;
  // A client must finish negotiating within handshake_timeout_ms; once a request's first
  // byte arrives, its header and payload must all arrive within request_timeout_ms, and
  // a reply queued for the client must be taken within it (a 32 MiB payload at 1.1 MB/s).
  // idle_timeout_ms closes a connection with nothing in flight for that long; 0 (the
  // default) keeps idle connections: nbd-client's may sit idle for days.
  uint64_t handshake_timeout_ms = 10'000;
  uint64_t request_timeout_ms = 30'000;
  uint64_t idle_timeout_ms = 0;
  // [control]: a group given read and write access to the control socket (mode 0660);
  // empty: owner only (0600).
  std::string control_socket_group;
  // [control] over TCP (docs/control.md "Over TCP"); listen empty: off.
  std::string control_listen;
  std::string control_token_file;
  std::string control_tls_cert;
  std::string control_tls_key;
  std::string control_node_id;    // empty: the host name
  std::string control_advertise;  // empty: the listen address as bound
  // [lsm]
  uint64_t flush_interval_ms = 1000;
  uint64_t l0_sst_size_bytes = 64ull << 20;
  // Write buffers not yet uploaded, all served volumes together (one budget): past it
  // writes wait.
  uint64_t max_unflushed_bytes = 256ull << 20;
  uint64_t block_cache_size_bytes = 256ull << 20;
  uint64_t upload_window = 8;  // segment uploads in flight (see above)
  double gc_live_ratio = 0.5;
  // Unset: the volume's defaults (10 min and 10 s; on memory:// segments are freed at once
  // and GC runs every second).
  std::optional<uint64_t> gc_grace_ms;
  std::optional<uint64_t> gc_interval_ms;
  // [cache]
  // Read-ahead of sequential reads: GET bytes in flight at most (0: no read-ahead).
  uint64_t read_ahead_max_bytes = 64ull << 20;
  // --salvage only (never from the file): open a damaged volume read-only.
  bool salvage = false;
  // [cache]: chunks on local disk (cache/disk_cache.h), off while disk_cache_size_bytes
  // is 0 (an explicit budget: a default would quietly take gigabytes of a disk whose size
  // we do not know). disk_cache_dir "" means <cache_dir>/chunks. Unused on memory://.
  std::string disk_cache_dir;
  uint64_t disk_cache_size_bytes = 0;
  // [record]
  std::string record_path;  // empty: not recording
  std::string record_workload = "unnamed";
  // [log]: "text" (the original's lines) or "json" (for log shippers); --log-format wins.
  std::string log_format = "text";
  // [metrics]: "HOST:PORT" serving Prometheus metrics at /metrics; empty: no metrics server.
  std::string metrics_address;

  // disk_size_gb in bytes; exact once Validate() has passed (disk_size_gb <= kMaxDiskSizeGb).
  uint64_t size_bytes() const { return disk_size_gb << 30; }
};

// Bounds on every number (README "Configuration"). Validate() refuses a value outside
// them with a message naming the key and the bound. They keep the arithmetic done on the
// values far from overflow: a duration in ns (ms * 10^6) stays below 2^50, a size in
// bytes (GiB << 30) below 2^63.
//
// The largest device: 8 EiB - 1 GiB, so that every byte offset fits in 63 bits.
constexpr uint64_t kMaxDiskSizeGb = (1ull << 33) - 1;
constexpr uint32_t kMinBlockSize = 512;
constexpr uint32_t kMaxBlockSize = 65536;
constexpr uint32_t kMaxConnections = 65536;
// flush_interval_ms and gc_interval_ms: 1 day.
constexpr uint64_t kMaxIntervalMs = 24ull * 3600 * 1000;
constexpr uint64_t kMinGcIntervalMs = 100;
// gc_grace_ms: 7 days.
constexpr uint64_t kMaxGcGraceMs = 7 * kMaxIntervalMs;
constexpr uint64_t kMinGcGraceMs = 1000;
// l0_sst_size_bytes and block_cache_size_bytes: at least 1 MiB.
constexpr uint64_t kMinBufferBytes = 1ull << 20;
// l0_sst_size_bytes: one segment, built in memory and uploaded with one PUT: 1 GiB.
constexpr uint64_t kMaxL0SstSizeBytes = 1ull << 30;
// max_unflushed_bytes: memory held for writes not yet uploaded: 64 GiB.
constexpr uint64_t kMaxUnflushedBytes = 64ull << 30;
// upload_window: 64 segment uploads in flight (each id a new opener's fence reserves).
constexpr uint64_t kMaxUploadWindow = 64;
// block_cache_size_bytes: 1 TiB.
constexpr uint64_t kMaxBlockCacheSizeBytes = 1ull << 40;
// cache.disk_size_bytes: 0 (off) or 1 MiB to 1 PiB.
constexpr uint64_t kMaxDiskCacheSizeBytes = 1ull << 50;
// read_ahead_max_bytes: 16 GiB.
constexpr uint64_t kMaxReadAheadBytes = 16ull << 30;
// nbd.max_inflight_bytes: 1 MiB to 64 GiB.
constexpr uint64_t kMaxNbdInflightBytes = 64ull << 30;
// nbd.handshake_timeout_ms and request_timeout_ms: 100 ms to 1 h; idle_timeout_ms: 0 (off)
// or 1 s to 7 days.
constexpr uint64_t kMinNbdTimeoutMs = 100;
constexpr uint64_t kMaxNbdTimeoutMs = 3600'000;
constexpr uint64_t kMinIdleTimeoutMs = 1000;
constexpr uint64_t kMaxIdleTimeoutMs = 7 * 24 * 3600'000ull;
// device.io_timeout_ms: 1 s to 1 h; device.reattach_timeout_ms: 0 (off) or 1 s to 1 day.
constexpr uint64_t kMinDeviceTimeoutMs = 1000;
constexpr uint64_t kMaxDeviceIoTimeoutMs = 3600'000;
constexpr uint64_t kMaxReattachTimeoutMs = 24 * 3600'000ull;
// stop_timeout_ms: 1 s to 1 h.
constexpr uint64_t kMinStopTimeoutMs = 1000;
constexpr uint64_t kMaxStopTimeoutMs = 3600'000;

// Parses TOML text on top of `base`. `source` names the file in messages. Warnings for
// ignored keys are appended to `warnings`. Text over kMaxConfigBytes (1 MiB), a key of
// more than kMaxKeyParts dotted parts or nesting deeper than kMaxNesting (16 each) is an
// error naming the line, found before toml++ parses (see config/toml_guard.h).
Result<Config> ParseToml(std::string_view text, std::string_view source, const Config& base,
                         std::vector<std::string>* warnings);
// ParseToml of a file's contents. Reads at most kMaxConfigBytes + 1 bytes: a larger file
// (or /dev/zero) is refused, not read to its end.
Result<Config> LoadFile(const std::string& path, const Config& base,
                        std::vector<std::string>* warnings);

// Checks every value against its bounds; the message names the key and the bound
// ("lsm.gc_interval_ms must be at most 86400000 (1 day), got 10000000000000").
Status Validate(const Config& c);

// Parses a size with an optional binary suffix: "4096", "64MiB", "1GiB", "256M".
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace portal::config
