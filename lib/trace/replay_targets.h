// Replay targets: where trace-bench sends ops.
//
// DeviceTarget: a BlockDevice in this process (an LsmVolume, as the daemon opens it).
// Ops are checked as the NBD codec would check them (inside the device, payloads at most
// 32 MiB) because devices assume validated requests; a bad op fails without reaching
// the device.
//
// NbdTarget: one or more connected nbd::Clients. An op goes to connection
// (op.conn - 1) % N when the trace recorded connections, else round-robin. Flags the
// server did not negotiate are dropped (FUA without SEND_FUA, ...) so that traces
// recorded against one server replay against another; an op type the server lacks
// fails and is counted.
//
// Both write WritePattern bytes and discard what they read. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "nbd/client.h"
#include "trace/replay.h"
#include "volume/block_device.h"

namespace portal::trace {

class DeviceTarget final : public ReplayTarget {
 public:
  // `device` and `pattern` must outlive the target.
  DeviceTarget(volume::BlockDevice& device, const WritePattern& pattern)
      : device_(device), pattern_(pattern) {}
  Task<Status> Execute(const TraceOp& op) override;

 private:
  volume::BlockDevice& device_;
  const WritePattern& pattern_;
};

class NbdTarget final : public ReplayTarget {
 public:
  // `clients` (at least one) and `pattern` must outlive the target.
  NbdTarget(std::vector<std::unique_ptr<nbd::Client>>& clients, const WritePattern& pattern)
      : clients_(clients), pattern_(pattern) {}
  Task<Status> Execute(const TraceOp& op) override;

 private:
  std::vector<std::unique_ptr<nbd::Client>>& clients_;
  const WritePattern& pattern_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace portal::trace
