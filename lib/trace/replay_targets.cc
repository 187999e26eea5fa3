#include "trace/replay_targets.h"

#include <fmt/format.h>

#include "nbd/protocol.h"
#include "util/buffer.h"

namespace portal::trace {
namespace {

constexpr uint64_t kMaxPayload = 32u << 20;  // the NBD server's limit (DESIGN.md)

}  // namespace

Task<Status> DeviceTarget::Execute(const TraceOp& op) {
  if (HasRange(op.type)) {
    uint64_t size = device_.size_bytes();
    if (op.offset > size || op.length > size - op.offset) {
      co_return Status::InvalidArgument(fmt::format("[{}, +{}) beyond the device's {} bytes",
                                                    op.offset, op.length, size));
    }
  }
  if ((op.type == OpType::kRead || op.type == OpType::kWrite) && op.length > kMaxPayload) {
    co_return Status::InvalidArgument(fmt::format("payload of {} bytes", op.length));
  }
  bool fua = op.flags & kFlagFua;
  switch (op.type) {
    case OpType::kRead: {
      Buffer buf(op.length);
      Status st = co_await device_.Read(op.offset, buf.span(), nullptr);
      co_return st;
    }
    case OpType::kWrite: {
      Status st = co_await device_.Write(op.offset, pattern_.Get(op.offset, op.length),
                                         device::WriteFlags{fua});
      co_return st;
    }
    case OpType::kFlush: {
      Status st = co_await device_.Flush();
      co_return st;
    }
    case OpType::kTrim: {
      Status st = co_await device_.Trim(op.offset, op.length, device::WriteFlags{fua});
      co_return st;
    }
    case OpType::kWriteZeroes: {
      device::ZeroFlags f{fua, (op.flags & kFlagNoHole) != 0, (op.flags & kFlagFastZero) != 0};
      Status st = co_await device_.WriteZeroes(op.offset, op.length, f);
      co_return st;
    }
    case OpType::kBlockStatus: {
      if (op.length == 0) co_return Status::InvalidArgument("BLOCK_STATUS of length 0");
      uint32_t max_extents = (op.flags & kFlagReqOne) ? 1 : 1024;
      auto r = co_await device_.BlockStatus(op.offset, op.length, max_extents);
      co_return r.ok() ? Status::Ok() : r.status();
    }
    case OpType::kCache: {
      Status st = co_await device_.Cache(op.offset, op.length);
      co_return st;
    }
  }
  co_return Status::InvalidArgument("unknown op type");
}

NbdTarget::NbdTarget(std::vector<std::unique_ptr<nbd::Client>>& clients,
                     const WritePattern& pattern, const Trace& trace)
    : clients_(clients), pattern_(pattern) {
  PORTAL_ASSERT(!clients_.empty(), "NbdTarget needs a client");
  for (const auto& op : trace.ops) {
    if (op.conn != 0 && !slot_of_conn_.contains(op.conn)) {
      slot_of_conn_.emplace(op.conn, slot_of_conn_.size() % clients_.size());
    }
  }
  if (slot_of_conn_.size() <= 1) slot_of_conn_.clear();
}

Task<Status> NbdTarget::Execute(const TraceOp& op) {
  auto it = slot_of_conn_.find(op.conn);
  size_t pick = it != slot_of_conn_.end() ? it->second : next_.fetch_add(1) % clients_.size();
  nbd::Client& c = *clients_[pick];
  uint16_t tflags = c.negotiated().transmission_flags;
  uint16_t fua = ((op.flags & kFlagFua) && (tflags & nbd::NBD_FLAG_SEND_FUA))
                     ? nbd::NBD_CMD_FLAG_FUA
                     : 0;
  if (HasRange(op.type) && op.length > UINT32_MAX) {
    co_return Status::InvalidArgument("length does not fit an NBD request");
  }
  uint32_t len = static_cast<uint32_t>(op.length);
  switch (op.type) {
    case OpType::kRead: {
      if (op.length > kMaxPayload) co_return Status::InvalidArgument("read too large");
      Buffer buf(len);
      Status st = co_await c.Read(op.offset, buf.span());
      co_return st;
    }
    case OpType::kWrite: {
      if (op.length > kMaxPayload) co_return Status::InvalidArgument("write too large");
      Status st = co_await c.Write(op.offset, pattern_.Get(op.offset, len), fua);
      co_return st;
    }
    case OpType::kFlush: {
      Status st = co_await c.Flush();
      co_return st;
    }
    case OpType::kTrim: {
      Status st = co_await c.Trim(op.offset, len, fua);
      co_return st;
    }
    case OpType::kWriteZeroes: {
      uint16_t f = fua;
      if (op.flags & kFlagNoHole) f |= nbd::NBD_CMD_FLAG_NO_HOLE;
      if ((op.flags & kFlagFastZero) && (tflags & nbd::NBD_FLAG_SEND_FAST_ZERO)) {
        f |= nbd::NBD_CMD_FLAG_FAST_ZERO;
      }
      Status st = co_await c.WriteZeroes(op.offset, len, f);
      co_return st;
    }
    case OpType::kBlockStatus: {
      uint16_t f = (op.flags & kFlagReqOne) ? nbd::NBD_CMD_FLAG_REQ_ONE : 0;
      auto r = co_await c.BlockStatus(op.offset, len, f);
      co_return r.ok() ? Status::Ok() : r.status();
    }
    case OpType::kCache: {
      Status st = co_await c.Cache(op.offset, len);
      co_return st;
    }
  }
  co_return Status::InvalidArgument("unknown op type");
}

}  // namespace portal::trace
