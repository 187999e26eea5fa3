// nbdlink: the kernel's NBD driver configured through generic netlink (the "nbd" family,
// linux/nbd-netlink.h), the interface nbd-client -L and rbd-nbd use. The daemon hands the
// kernel one end of a socketpair per device and serves the other end itself, so a device
// outlives the process that asked for it (the CSI plugin) and, with a dead-connection
// timeout, a restart of the daemon: the kernel queues I/O until Reconfigure() hands it a
// new socket.
//
// What Debian 12's 6.1 kernel accepts (drivers/block/nbd.c, nbd_genl_*):
// - CONNECT: SIZE_BYTES is required; INDEX optional (none: the first free device, or a
//   new one); BLOCK_SIZE_BYTES a power of two in [512, PAGE_SIZE]; TIMEOUT and
//   DEAD_CONN_TIMEOUT in whole seconds; SERVER_FLAGS the NBD transmission flags (it acts
//   on READ_ONLY, SEND_FLUSH, SEND_FUA, SEND_TRIM, ROTATIONAL; WRITE_ZEROES only from 6.4);
//   BACKEND_IDENTIFIER shows in /sys/block/nbdN/backend, and a RECONFIGURE must then name
//   the same backend (so a device reused by someone else is never taken over).
// - RECONFIGURE: replaces a *dead* socket with a new one (a live one is kept and the new
//   socket silently dropped: the kernel answers success either way), and applies
//   SIZE_BYTES (an online resize).
// - DISCONNECT: sends NBD_CMD_DISC, shuts the sockets, fails what is queued.
// - STATUS: whether a device index has a configuration (connected or waiting).
//
// Each call opens its own netlink socket (no shared state; thread-safe). Needs
// CAP_SYS_ADMIN; errors name the device and say what the kernel or libnl said.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "util/status.h"

namespace portal::nbdlink {

struct ConnectParams {
  int index = -1;  // -1: the kernel picks the first unused device
  uint64_t size_bytes = 0;
  uint64_t block_size = 4096;
  uint64_t server_flags = 0;  // NBD transmission flags
  int socket_fd = -1;         // the kernel's end; the caller keeps (and closes) its fd
  uint64_t io_timeout_s = 30;
  uint64_t dead_conn_timeout_s = 120;  // 0: none (a dead connection fails I/O at once)
  std::string backend;  // BACKEND_IDENTIFIER
};

// Configures a device; returns its index.
Result<int> Connect(const ConnectParams& p);

// Hands device `index` (configured with `backend`) a new socket when socket_fd >= 0, and
// a new size when set.
Status Reconfigure(int index, const std::string& backend, int socket_fd,
                   std::optional<uint64_t> size_bytes);

Status Disconnect(int index);

// Whether device `index` has a configuration (NBD_CMD_STATUS). False for an unknown index.
Result<bool> Configured(int index);

// "/dev/nbd7" -> 7; InvalidArgument otherwise.
Result<int> ParseDevicePath(const std::string& path);
std::string DevicePath(int index);

}  // namespace portal::nbdlink
