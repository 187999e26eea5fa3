// CountingStore: counts the calls that pass through it, by kind: calls, errors (non-OK
// results, NotFound included) and payload bytes of the successful calls (GET: bytes
// returned; PUT and PUT_IF_ABSENT: bytes stored; LIST: entries returned). These are the numbers
// benchmarks and `portalctl status` report. One List call is one count here even when S3 needed
// ceil(n / 1000) requests for it.
//
// Owns the inner store. Thread-safe (relaxed atomics; a snapshot is not one instant, but
// every counter in it is exact for the calls that had finished when it was read).
#pragma once

#include <array>
#include <atomic>
#include <memory>

#include "objstore/object_store.h"

namespace portal::objstore {

struct OpStats {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;

  friend bool operator==(const OpStats&, const OpStats&) = default;
};

struct StoreStats {
  std::array<OpStats, kNumOpKinds> ops{};

  const OpStats& operator[](OpKind kind) const { return ops[static_cast<size_t>(kind)]; }
  OpStats& operator[](OpKind kind) { return ops[static_cast<size_t>(kind)]; }
  OpStats Total() const;
  // Counters since `earlier` (for rates over an interval).
  StoreStats Since(const StoreStats& earlier) const;
  // "GET calls=3 errors=0 bytes=12 PUT ..." (kinds with no calls omitted).
  std::string ToString() const;
};

class CountingStore final : public ObjectStore {
 public:
  explicit CountingStore(std::unique_ptr<ObjectStore> inner);

  StoreStats stats() const;
  ObjectStore& inner() { return *inner_; }

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override;
  std::string url() const override { return inner_->url(); }
  bool RetriesTransientErrors() const override { return inner_->RetriesTransientErrors(); }

 private:
  struct Counters {
    std::atomic<uint64_t> calls{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> bytes{0};
  };
  void Record(OpKind kind, bool ok, uint64_t bytes);

  std::unique_ptr<ObjectStore> inner_;
  std::array<Counters, kNumOpKinds> counters_;
};

}  // namespace portal::objstore
