#include "daemon/control_handler.h"

#include <fmt/format.h>

#include "util/log.h"

namespace portal::daemon {

namespace {

auto Log() { return log::Get("portalbd::control"); }

control::Reply FromStatus(const Status& st) { return control::ErrorFromStatus(st); }

control::Reply AlreadyExists(const std::string& name) {
  return control::ErrorReply{std::string(control::kAlreadyExists),
                             fmt::format("a snapshot named '{}' already exists", name)};
}

}  // namespace

Task<control::Reply> ControlHandler::Create(std::string name) {
  if (volume_->GetSnapshot(name).ok()) co_return AlreadyExists(name);
  auto created = co_await volume_->CreateSnapshot(name);
  if (created.ok()) co_return control::SnapshotReply{std::move(*created)};
  // Two creates of one name raced: the loser's InvalidArgument is a duplicate.
  if (volume_->GetSnapshot(name).ok()) co_return AlreadyExists(name);
  co_return FromStatus(created.status());
}

Task<control::Reply> ControlHandler::Handle(control::Request request) {
  using control::Op;
  control::Reply reply = control::OkReply{};
  switch (request.op) {
    case Op::kSnapshotCreate:
      reply = co_await Create(request.name);
      break;
    case Op::kSnapshotList:
      reply = control::SnapshotListReply{volume_->ListSnapshots()};
      break;
    case Op::kSnapshotGet: {
      auto s = volume_->GetSnapshot(request.name);
      if (s.ok()) {
        reply = control::SnapshotReply{std::move(*s)};
      } else {
        reply = FromStatus(s.status());
      }
      break;
    }
    case Op::kSnapshotDelete: {
      Status st = co_await volume_->DeleteSnapshot(request.name);
      if (!st.ok()) reply = FromStatus(st);
      break;
    }
    case Op::kSnapshotRestore: {
      Status st = co_await volume_->RestoreSnapshot(request.name);
      if (!st.ok()) reply = FromStatus(st);
      break;
    }
    case Op::kStatus:
      reply = control::StatusReply{status_()};
      break;
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
