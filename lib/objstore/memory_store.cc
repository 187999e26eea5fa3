#include "objstore/memory_store.h"

#include <fmt/format.h>

#include "objstore/semantics.h"
#include "util/buffer_pool.h"

namespace portal::objstore {
namespace {

std::string Etag(uint64_t version) { return fmt::format("v{}", version); }

}  // namespace

void MemoryStore::Recycle(std::shared_ptr<Object> obj) {
  // Out of the map, so no new reference can appear: a count of 1 means no Get holds it.
  if (pool_ && obj && obj.use_count() == 1) pool_->Give(std::move(obj->data));
}

Task<Result<std::string>> MemoryStore::Get(std::string key, std::optional<GetRange> range) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  CO_RETURN_IF_ERROR(ValidateRange(range));
  std::shared_ptr<const Object> obj;
  {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) co_return Status::NotFound(key);
    obj = it->second;
  }
  CO_ASSIGN_OR_RETURN(auto span, ResolveRange(obj->size(), range));
  if (!obj->rope.empty()) co_return obj->rope.Read(span.first, span.second - span.first);
  co_return obj->data.substr(span.first, span.second - span.first);
}

Task<Result<ObjectInfo>> MemoryStore::Head(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  std::lock_guard lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) co_return Status::NotFound(key);
  co_return ObjectInfo{key, it->second->size(), Etag(it->second->version)};
}

Status MemoryStore::Store(std::string key, Object obj, bool if_absent) {
  RETURN_IF_ERROR(ValidateKey(key));
  const uint64_t size = obj.size();
  std::shared_ptr<Object> old;  // recycled outside the lock
  std::unique_lock lock(mu_);
  auto [it, inserted] = objects_.try_emplace(std::move(key));
  if (!inserted) {
    if (if_absent) return Status::PreconditionFailed(it->first + " exists");
    old = std::move(it->second);
    total_bytes_ -= old->size();
  }
  obj.version = next_version_++;
  it->second = std::make_shared<Object>(std::move(obj));
  total_bytes_ += size;
  lock.unlock();
  Recycle(std::move(old));
  return Status::Ok();
}

Task<Status> MemoryStore::Put(std::string key, std::string data) {
  co_return Store(std::move(key), Object{std::move(data), {}, 0}, false);
}

Task<Status> MemoryStore::PutIfAbsent(std::string key, std::string data) {
  co_return Store(std::move(key), Object{std::move(data), {}, 0}, true);
}

Task<Status> MemoryStore::PutIfAbsentRope(std::string key, Rope data) {
  if (data.is_one_string()) {
    co_return Store(std::move(key), Object{std::move(data).Flatten(), {}, 0}, true);
  }
  co_return Store(std::move(key), Object{{}, std::move(data), 0}, true);
}

Task<Status> MemoryStore::Delete(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  std::shared_ptr<Object> old;
  {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it != objects_.end()) {
      old = std::move(it->second);
      total_bytes_ -= old->size();
      objects_.erase(it);
    }
  }
  Recycle(std::move(old));
  co_return Status::Ok();
}

Task<Result<std::vector<ObjectInfo>>> MemoryStore::List(std::string prefix,
                                                        std::string start_after) {
  std::vector<ObjectInfo> out;
  std::lock_guard lock(mu_);
  // Start at the larger of the two lower bounds; stop at the first key past the prefix.
  auto it =
      start_after >= prefix ? objects_.upper_bound(start_after) : objects_.lower_bound(prefix);
  for (; it != objects_.end() && it->first.starts_with(prefix); ++it) {
    if (!InListing(it->first, prefix, start_after)) continue;
    out.push_back(ObjectInfo{it->first, it->second->size(), Etag(it->second->version)});
  }
  co_return out;
}

Task<Status> MemoryStore::CheckAccess() { co_return Status::Ok(); }

size_t MemoryStore::object_count() const {
  std::lock_guard lock(mu_);
  return objects_.size();
}

uint64_t MemoryStore::total_bytes() const {
  std::lock_guard lock(mu_);
  return total_bytes_;
}

}  // namespace portal::objstore
