#include "daemon/control_handler.h"

#include <fmt/format.h>

#include "util/assert.h"
#include "util/log.h"

namespace portal::daemon {

namespace {

auto Log() { return log::Get("portalbd::control"); }

control::Reply FromStatus(const Status& st) { return control::ErrorFromStatus(st); }

control::SnapshotEntry Entry(const volume::SnapshotInfo& s) {
  control::SnapshotEntry e;
  e.name = s.name;
  e.id = s.id;
  e.created_ns = s.created_ns;
  e.size_bytes = s.size_bytes;
  e.pinned_bytes = s.data_bytes;
  e.attached = s.attached;
  return e;
}

control::Reply AlreadyExists(const std::string& name) {
  return control::ErrorReply{std::string(control::kAlreadyExists),
                             fmt::format("a snapshot named '{}' already exists", name)};
}

}  // namespace

Task<control::Reply> ControlHandler::Create(std::string name) {
  if (volume_->GetSnapshot(name).ok()) co_return AlreadyExists(name);
  auto created = co_await volume_->CreateSnapshot(name);
  if (created.ok()) co_return control::SnapshotReply{Entry(*created)};
  // Two creates of one name raced: the loser's InvalidArgument is a duplicate.
  if (volume_->GetSnapshot(name).ok()) co_return AlreadyExists(name);
  co_return FromStatus(created.status());
}

Task<control::Reply> ControlHandler::Dispatch(const control::Request& request) {
  using control::Op;
  switch (request.op) {
    case Op::kSnapshotCreate:
      co_return co_await Create(request.name);
    case Op::kSnapshotList: {
      control::SnapshotListReply list;
      for (const auto& s : volume_->ListSnapshots()) list.snapshots.push_back(Entry(s));
      co_return control::Reply(std::move(list));
    }
    case Op::kSnapshotGet: {
      auto s = volume_->GetSnapshot(request.name);
      if (!s.ok()) co_return FromStatus(s.status());
      co_return control::SnapshotReply{Entry(*s)};
    }
    case Op::kSnapshotDelete: {
      Status st = co_await volume_->DeleteSnapshot(request.name);
      if (!st.ok()) co_return FromStatus(st);
      co_return control::OkReply{};
    }
    case Op::kSnapshotRestore: {
      Status st = co_await volume_->RestoreSnapshot(request.name);
      if (!st.ok()) co_return FromStatus(st);
      co_return control::OkReply{};
    }
    case Op::kStatus:
      co_return control::StatusReply{status_()};
  }
  PORTAL_ASSERT(false, "unknown control op");
  co_return control::OkReply{};
}

Task<control::Reply> ControlHandler::Handle(control::Request request) {
  using control::Op;
  // The protocol passes names on unjudged; the volume's rule decides, for every op.
  const Status name = control::OpTakesName(request.op)
                          ? volume::ValidateSnapshotName(request.name)
                          : Status::Ok();
  control::Reply reply;
  if (name.ok()) {
    reply = co_await Dispatch(request);
  } else {
    reply = FromStatus(name);
  }
  const auto* err = std::get_if<control::ErrorReply>(&reply);
  const bool changes = request.op == Op::kSnapshotCreate || request.op == Op::kSnapshotDelete ||
                       request.op == Op::kSnapshotRestore;
  if (err) {
    Log()->info("control {} name={} failed code={} message=\"{}\"", control::OpName(request.op),
                request.name, err->code, err->message);
  } else if (changes) {
    Log()->info("control {} name={} ok", control::OpName(request.op), request.name);
  } else {
    Log()->debug("control {} ok", control::OpName(request.op));
  }
  co_return reply;
}

}  // namespace portal::daemon
