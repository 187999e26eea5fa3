// NbdClient: a simulated NBD client connected to a real nbd::Session (the same sans-io
// codec the daemon serves sockets with), without sockets: request bytes go into the
// session's input, reply bytes are parsed from its output. Session completions are
// posted to the SimEnv, so requests interleave with everything else in the simulation.
//
// Negotiates fixed newstyle, optionally structured replies with base:allocation, then
// NBD_OPT_GO. Replies are parsed strictly: any framing error is reported as a violation
// through `on_error`.
//
// Not thread-safe (the simulator is single-threaded). Must outlive its requests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "device/block_device.h"
#include "env/sim_env.h"
#include "nbd/export.h"
#include "nbd/session.h"

namespace portal::dst {

class NbdClient final : private nbd::Session::Host {
 public:
  struct Reply {
    uint32_t error = 0;                       // NBD error number (0: success)
    std::string data;                         // READ: the bytes (holes filled with zeroes)
    std::vector<device::ByteRange> holes;     // READ: hole chunks (relative offsets)
    std::vector<device::StatusExtent> extents;  // BLOCK_STATUS
  };
  using Done = std::function<void(Reply)>;

  NbdClient(SimEnv& env, std::shared_ptr<device::BlockDevice> device, bool structured,
            std::function<void(const std::string&)> on_error);
  ~NbdClient() override;

  // Runs the handshake to the transmission phase (drives `env` as needed).
  bool Connect();
  bool structured() const { return structured_; }
  // Queues one request; `done` runs when its final reply chunk has been parsed.
  void Send(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length,
            std::string payload, Done done);
  // The process died: replies are no longer delivered.
  void Abandon() { abandoned_ = true; }
  size_t inflight() const { return pending_.size(); }
  uint64_t session_inflight() const { return session_->inflight(); }

 private:
  struct Pending {
    uint16_t type;
    uint64_t offset;
    uint32_t length;
    Reply reply;
    Done done;
  };

  void RunInContext(std::function<void()> fn) override;
  std::shared_ptr<void> KeepAlive() override { return nullptr; }
  void Pump();
  bool ParseHandshakeReply(uint32_t* type, std::string* payload);
  void ParseReplies();
  void Fail(const std::string& what);

  SimEnv& env_;
  bool structured_;
  std::function<void(const std::string&)> on_error_;
  std::unique_ptr<nbd::SingleExportCatalog> catalog_;
  std::unique_ptr<nbd::Session> session_;
  std::string to_send_;
  std::string received_;
  std::map<uint64_t, Pending> pending_;
  uint64_t next_cookie_ = 1;
  bool transmission_ = false;
  bool abandoned_ = false;
  bool broken_ = false;
};

}  // namespace portal::dst
