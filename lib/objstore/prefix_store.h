// PrefixStore: a view of another store under a key prefix, so that one volume's objects
// ("manifest/...", "seg/...", ...) can live at "volumes/<name>/manifest/..." without the
// volume knowing (docs/volumes.md). Every key and List prefix is prefixed on the way in;
// listed keys come back with the prefix stripped. Keys are validated against the view
// (1..kMaxKeyBytes bytes) before the prefix is added; the inner store then refuses keys
// that the prefix makes too long (InvalidArgument), so a view's usable key length is
// kMaxKeyBytes - prefix().size().
//
// url() is the inner URL with the prefix appended ("s3://bucket/p" + "/volumes/a"), so
// caches keyed by URL (the SQLite cache, the disk cache) keep views apart.
//
// Does not own the inner store, which must outlive the view. Thread-safe as the inner store.
#pragma once

#include <string>

#include "objstore/object_store.h"

namespace portal::objstore {

class PrefixStore final : public ObjectStore {
 public:
  // `prefix` is non-empty and ends with '/' (asserted).
  PrefixStore(ObjectStore& inner, std::string prefix);

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override { return inner_.CheckAccess(); }
  std::string url() const override;
  bool RetriesTransientErrors() const override { return inner_.RetriesTransientErrors(); }

  const std::string& prefix() const { return prefix_; }

 private:
  ObjectStore& inner_;
  const std::string prefix_;
};

}  // namespace portal::objstore
