#include "objstore/prefix_store.h"

#include "objstore/semantics.h"
#include "util/assert.h"

namespace portal::objstore {

PrefixStore::PrefixStore(ObjectStore& inner, std::string prefix)
    : inner_(inner), prefix_(std::move(prefix)) {
  PORTAL_ASSERT(!prefix_.empty() && prefix_.back() == '/', "a store prefix ends with '/'");
}

std::string PrefixStore::url() const {
  std::string u = inner_.url();
  if (!u.ends_with('/')) u.push_back('/');
  u.append(prefix_, 0, prefix_.size() - 1);
  return u;
}

// The key checks run on the view's key: an empty key must not become the prefix itself.
Task<Result<std::string>> PrefixStore::Get(std::string key, std::optional<GetRange> range) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await inner_.Get(prefix_ + key, range);
}

Task<Result<ObjectInfo>> PrefixStore::Head(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  auto info = co_await inner_.Head(prefix_ + key);
  if (info.ok()) info->key = std::move(key);
  co_return info;
}

Task<Status> PrefixStore::Put(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await inner_.Put(prefix_ + key, std::move(data));
}

Task<Status> PrefixStore::PutIfAbsent(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await inner_.PutIfAbsent(prefix_ + key, std::move(data));
}

Task<Status> PrefixStore::PutIfAbsentRope(std::string key, Rope data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await inner_.PutIfAbsentRope(prefix_ + key, std::move(data));
}

Task<Status> PrefixStore::Delete(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await inner_.Delete(prefix_ + key);
}

Task<Result<std::vector<ObjectInfo>>> PrefixStore::List(std::string prefix,
                                                        std::string start_after) {
  // An empty start_after means "from the start"; prefixed, it would still sort before
  // every key under the view, but keep it empty so the inner store sees the same call.
  std::string after = start_after.empty() ? "" : prefix_ + start_after;
  auto listed = co_await inner_.List(prefix_ + prefix, std::move(after));
  if (!listed.ok()) co_return listed.status();
  for (ObjectInfo& o : *listed) {
    PORTAL_ASSERT(o.key.starts_with(prefix_), "listed key outside the prefix");
    o.key.erase(0, prefix_.size());
  }
  co_return listed;
}

}  // namespace portal::objstore
