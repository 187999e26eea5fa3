#include "util/status.h"

namespace portal {

std::string_view CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kIOError: return "IOError";
    case Status::Code::kInvalidArgument: return "InvalidArgument";
    case Status::Code::kUnavailable: return "Unavailable";
    case Status::Code::kPreconditionFailed: return "PreconditionFailed";
    case Status::Code::kNotSupported: return "NotSupported";
    case Status::Code::kPermissionDenied: return "PermissionDenied";
    case Status::Code::kNoSpace: return "NoSpace";
    case Status::Code::kBusy: return "Busy";
    case Status::Code::kShutdown: return "Shutdown";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  if (!message_.empty()) {
    m += ": ";
    m += message_;
  }
  return Status(code_, std::move(m));
}

}  // namespace portal
