// Replay targets: where trace-bench sends ops.
//
// DeviceTarget: a BlockDevice in this process (an LsmVolume, as the daemon opens it).
// Ops are checked as the NBD codec would check them (inside the device, payloads at most
// 32 MiB) because devices assume validated requests; a bad op fails without reaching
// the device.
//
// NbdTarget: one or more connected nbd::Clients. When the trace recorded more than one
// connection, the k-th connection to appear goes to client k % N (requests that shared a
// connection share one again); otherwise ops go round-robin over the N clients. Flags the
// server did not negotiate are dropped (FUA without SEND_FUA, ...) so that traces
// recorded against one server replay against another; an op type the server lacks
// fails and is counted.
//
// Both write WritePattern bytes and discard what they read. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <unordered_map>
#include <vector>

#include "device/block_device.h"
#include "nbd/client.h"
#include "trace/replay.h"

namespace portal::trace {

class DeviceTarget final : public ReplayTarget {
 public:
  // `device` and `pattern` must outlive the target.
  DeviceTarget(device::BlockDevice& device, const WritePattern& pattern)
      : device_(device), pattern_(pattern) {}
  Task<Status> Execute(const TraceOp& op) override;

 private:
  device::BlockDevice& device_;
  const WritePattern& pattern_;
};

class NbdTarget final : public ReplayTarget {
 public:
  // `clients` (at least one), `pattern` and `trace` must outlive the target.
  NbdTarget(std::vector<std::unique_ptr<nbd::Client>>& clients, const WritePattern& pattern,
            const Trace& trace);
  Task<Status> Execute(const TraceOp& op) override;

 private:
  std::vector<std::unique_ptr<nbd::Client>>& clients_;
  const WritePattern& pattern_;
  // Recorded connection -> client, when the trace used more than one connection.
  std::unordered_map<uint32_t, size_t> slot_of_conn_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace portal::trace
