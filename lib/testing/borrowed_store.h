// A non-owning ObjectStore that forwards to another, so tests can wrap one store in
// several owners over time (FaultStore owns what it wraps; a "restart" wraps the same
// objects again).
#pragma once

#include "objstore/object_store.h"

namespace portal::testing {

class BorrowedStore : public objstore::ObjectStore {
 public:
  explicit BorrowedStore(objstore::ObjectStore& inner) : inner_(inner) {}
  Task<Result<std::string>> Get(std::string key,
                                std::optional<objstore::GetRange> range = {}) override {
    return inner_.Get(std::move(key), range);
  }
  Task<Result<objstore::ObjectInfo>> Head(std::string key) override {
    return inner_.Head(std::move(key));
  }
  Task<Status> Put(std::string key, std::string data) override {
    return inner_.Put(std::move(key), std::move(data));
  }
  Task<Status> PutIfAbsent(std::string key, std::string data) override {
    return inner_.PutIfAbsent(std::move(key), std::move(data));
  }
  Task<Status> PutIfAbsentRope(std::string key, objstore::Rope data) override {
    return inner_.PutIfAbsentRope(std::move(key), std::move(data));
  }
  Task<Status> Delete(std::string key) override { return inner_.Delete(std::move(key)); }
  Task<Result<std::vector<objstore::ObjectInfo>>> List(std::string prefix,
                                                       std::string start_after = "") override {
    return inner_.List(std::move(prefix), std::move(start_after));
  }
  Task<Status> CheckAccess() override { return inner_.CheckAccess(); }
  std::string url() const override { return inner_.url(); }
  bool RetriesTransientErrors() const override { return inner_.RetriesTransientErrors(); }

 private:
  objstore::ObjectStore& inner_;
};

}  // namespace portal::testing
