// ObjectStore: the one interface between portalbd and where its objects live.
//
// Stores: memory:// (strict, in-process; the simulator's basis), file:///abs/dir
// (objects are files, written atomically) and s3://bucket/prefix (any S3-compatible
// service through lib/s3). Wrappers: CountingStore (counting_store.h) and FaultStore
// (fault_store.h). The conformance suite (conformance_test.cc) runs unchanged against all
// three stores; the rules below are what it enforces.
//
// Keys
//   Relative to the URL's prefix; non-empty; at most kMaxKeyBytes bytes (S3's limit).
//   Otherwise InvalidArgument. memory:// and file:// take any bytes (file:// encodes them,
//   see file_key.h); S3 requires UTF-8, which is all portalbd itself uses. Order is
//   byte-wise (memcmp), as S3 orders UTF-8 keys.
//
// Get(key, range)
//   Whole object, or bytes [offset, offset + length) of it:
//   - a range running past the end returns the bytes that exist (offset + length may
//     overflow; it then means "to the end");
//   - length == 0, or offset >= size (also for an empty object): InvalidArgument;
//   - missing key: NotFound (checked before the range against the size).
// Head(key)
//   Size and etag; NotFound if missing. The etag is opaque and non-empty: it changes when
//   the content changes, and may or may not change when identical bytes are rewritten.
// Put(key, data)
//   Creates or replaces atomically: readers see the old or the new object, never a mix.
// PutIfAbsent(key, data)
//   Conditional create (S3: If-None-Match: *). PreconditionFailed if the key exists.
//   memory:// and file:// guarantee exactly one winner among racing callers, also across
//   processes for file://. Stores that ignore the condition (s3rver, some S3 clones)
//   behave like Put; portalbd probes for this at open (DESIGN.md, single-writer step 5).
//   After a lost acknowledgement a retry may see PreconditionFailed for its own write:
//   callers that care read the object back.
// Delete(key)
//   Idempotent: deleting a missing key is OK.
// List(prefix, start_after)
//   Every object whose key starts with `prefix` and sorts after `start_after`, sorted,
//   across all pages (S3 returns 1,000 keys per request). No delimiter semantics: keys
//   under "sub/directories" are listed too. A listing taken while others write may or may
//   not include objects written or deleted meanwhile.
// CheckAccess()
//   For start-up: OK, or one Status whose message says in one line what is wrong (missing
//   bucket or directory: NotFound; refused credentials: PermissionDenied; unreachable
//   endpoint: Unavailable) instead of a stack of retries.
//
// Errors: every call returns a Status; Status::retryable() (code Unavailable) says whether
// calling again may help (timeouts, 5xx, SlowDown, connection resets). Everything else is
// final for that call: NotFound, PreconditionFailed, InvalidArgument, PermissionDenied,
// NoSpace, Corruption (a malformed response), IOError.
//
// Thread-safety: every store and wrapper is safe to call from many threads with many calls
// in flight. Tasks complete on the Env's executor. A store must outlive its calls: destroy
// it only when none is in flight. Get/Put take and return std::string (binary-safe); Put
// takes its data by value (move it in: no copy is made).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "env/env.h"
#include "env/task.h"
#include "objstore/rope.h"
#include "s3/options.h"
#include "util/status.h"

namespace portal {
class BufferPool;
}

namespace portal::s3 {
class HttpTransport;
}

namespace portal::objstore {

inline constexpr size_t kMaxKeyBytes = 1024;

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  std::string etag;

  friend bool operator==(const ObjectInfo&, const ObjectInfo&) = default;
};

struct GetRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// The kinds of calls, for the counting and fault wrappers. Not stored anywhere.
enum class OpKind : uint8_t { kGet, kHead, kPut, kPutIfAbsent, kDelete, kList, kCheckAccess };
inline constexpr size_t kNumOpKinds = 7;
std::string_view OpKindName(OpKind kind);  // "GET", "HEAD", "PUT", "PUT_IF_ABSENT", ...

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  virtual Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) = 0;
  virtual Task<Result<ObjectInfo>> Head(std::string key) = 0;
  virtual Task<Status> Put(std::string key, std::string data) = 0;
  virtual Task<Status> PutIfAbsent(std::string key, std::string data) = 0;
  virtual Task<Status> Delete(std::string key) = 0;
  virtual Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                                     std::string start_after = "") = 0;
  virtual Task<Status> CheckAccess() = 0;

  // PutIfAbsent of bytes in pieces (a segment: the write buffer's memory and a footer).
  // Every store takes it: memory:// keeps the pieces (no copy), the others join them
  // (the default) unless the rope is one string (Rope::Flatten: no copy either).
  virtual Task<Status> PutIfAbsentRope(std::string key, Rope data);

  // The store's URL without credentials, e.g. "s3://bucket/prefix".
  virtual std::string url() const = 0;

  // Whether every request is retried on transient errors inside the store (S3Store: the
  // S3 client's retries). A retry layer above then makes one call (objstore/retry.h).
  virtual bool RetriesTransientErrors() const { return false; }
};

struct StoreOptions {
  // s3:// only. Unset: taken from the process environment (s3::ClientOptionsFromEnv).
  std::optional<s3::ClientOptions> s3;
  // s3:// only: the HTTP layer. Null: libcurl. Tests inject a fault-injecting fake.
  std::shared_ptr<s3::HttpTransport> s3_transport;
  // Where written-out object buffers go back to and joined ropes come from (see
  // util/buffer_pool.h). Null: no pooling. Must outlive the store.
  BufferPool* buffer_pool = nullptr;
};

// Opens a store by URL: "memory://", "file:///absolute/dir", "s3://bucket[/prefix]".
// Validates the URL and the settings only; it contacts nothing (call CheckAccess).
// `env` must outlive the store.
Result<std::unique_ptr<ObjectStore>> OpenStore(const std::string& url, Env& env,
                                               const StoreOptions& options = {});

}  // namespace portal::objstore
