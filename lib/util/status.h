// Status and Result<T>: the only error currency inside lib/.
//
// lib/ throws no exceptions across module boundaries. Every fallible call returns a
// [[nodiscard]] Status or Result<T>. The set of codes is closed and small; each foreign
// error space (errno, asio, curl + HTTP, SQLite) is converted to Status in exactly one
// file, and Status becomes an NBD error in exactly one place (nbd/transmission.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "util/assert.h"

namespace portal {

class [[nodiscard]] Status {
 public:
  // Stored in no object: values may change, but keep them stable for log readers.
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound,            // object or name does not exist
    kCorruption,          // bytes failed a checksum or a format check
    kIOError,             // a non-retryable I/O failure
    kInvalidArgument,     // the caller asked for something malformed or out of range
    kUnavailable,         // transient: a retry may succeed (5xx, SlowDown, timeouts)
    kPreconditionFailed,  // a conditional write lost: someone else got there (fencing)
    kNotSupported,        // the operation is not implemented for this target
    kPermissionDenied,    // read-only target, or credentials refused
    kNoSpace,             // beyond the end of the device, or a bound was reached
    kBusy,                // in use (e.g. a snapshot attached by a client)
    kShutdown,            // the process is stopping
  };

  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status PreconditionFailed(std::string m) {
    return {Code::kPreconditionFailed, std::move(m)};
  }
  static Status NotSupported(std::string m) { return {Code::kNotSupported, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {Code::kPermissionDenied, std::move(m)};
  }
  static Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status Shutdown(std::string m) { return {Code::kShutdown, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // True when retrying the same call may succeed.
  bool retryable() const { return code_ == Code::kUnavailable; }

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsPreconditionFailed() const { return code_ == Code::kPreconditionFailed; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }

  // "NotFound: seg/0001.seg"
  std::string ToString() const;
  // Returns a copy with "context: " prepended to the message.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

std::string_view CodeName(Status::Code code);

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    PORTAL_ASSERT(!status_.ok(), "Result constructed from an OK Status without a value");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  T& value() & {
    PORTAL_ASSERT(ok(), status_.ToString().c_str());
    return *value_;
  }
  const T& value() const& {
    PORTAL_ASSERT(ok(), status_.ToString().c_str());
    return *value_;
  }
  T&& value() && {
    PORTAL_ASSERT(ok(), status_.ToString().c_str());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace portal

#define PORTAL_CONCAT_INNER_(a, b) a##b
#define PORTAL_CONCAT_(a, b) PORTAL_CONCAT_INNER_(a, b)

// In ordinary functions.
#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::portal::Status portal_status_ = (expr);              \
    if (!portal_status_.ok()) return portal_status_;       \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(PORTAL_CONCAT_(portal_result_, __COUNTER__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

// In coroutines (Task<Status>, Task<Result<T>>). `expr` may contain co_await.
#define CO_RETURN_IF_ERROR(expr)                           \
  do {                                                     \
    ::portal::Status portal_status_ = (expr);              \
    if (!portal_status_.ok()) co_return portal_status_;    \
  } while (0)

#define CO_ASSIGN_OR_RETURN(lhs, expr) \
  CO_ASSIGN_OR_RETURN_IMPL_(PORTAL_CONCAT_(portal_result_, __COUNTER__), lhs, expr)
#define CO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)   \
  auto tmp = (expr);                                \
  if (!tmp.ok()) co_return std::move(tmp).status(); \
  lhs = std::move(tmp).value()
