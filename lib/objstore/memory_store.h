// MemoryStore (memory://): objects in a std::map in this process. Strict semantics:
// read-after-write, list-after-write, exactly one winner of racing PutIfAbsent calls.
// The simulator's faulty store wraps it (fault_store.h).
//
// Every call completes without suspending (no I/O); callers that want interleaving or
// latency wrap the store in a FaultStore. Thread-safe: one mutex guards the map; object
// bytes are immutable and shared, so copying a large object out happens outside the lock.
// A replaced or deleted object's bytes go to the BufferPool given (util/buffer_pool.h).
// Objects written with PutIfAbsentRope keep their pieces (a segment's blocks stay in the
// write buffer's memory: no copy); a rope of one string is kept as that string.
// Etags are a store-wide version number: a new one for every Put.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "objstore/object_store.h"

namespace portal::objstore {

class MemoryStore final : public ObjectStore {
 public:
  // `pool`: where dropped objects' bytes go (null: freed). Must outlive the store.
  explicit MemoryStore(BufferPool* pool = nullptr) : pool_(pool) {}
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  std::string url() const override { return "memory://"; }

  // Number of objects and their total size (tests, simulator bookkeeping).
  size_t object_count() const;
  uint64_t total_bytes() const;

 private:
  struct Object {
    std::string data;  // or, when not empty:
    Rope rope;
    uint64_t version;
    uint64_t size() const { return rope.empty() ? data.size() : rope.size(); }
  };
  Status Store(std::string key, Object obj, bool if_absent);
  // Gives a dropped object's bytes to the BufferPool unless a Get still holds them.
  void Recycle(std::shared_ptr<Object> obj);

  BufferPool* const pool_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Object>> objects_;    // GUARDED_BY(mu_)
  uint64_t next_version_ = 1;                                     // GUARDED_BY(mu_)
  uint64_t total_bytes_ = 0;                                      // GUARDED_BY(mu_)
};

}  // namespace portal::objstore
