#include "objstore/retrying_store.h"

namespace portal::objstore {

Task<Result<std::string>> RetryingReadStore::Get(std::string key, std::optional<GetRange> range) {
  Result<std::string> out = Status::Unavailable("not attempted");
  (void)co_await Retry(
      env_, policy_,
      [&]() -> Task<Status> {
        out = co_await inner_.Get(key, range);
        co_return out.status();
      });
  co_return out;
}

Task<Result<ObjectInfo>> RetryingReadStore::Head(std::string key) {
  Result<ObjectInfo> out = Status::Unavailable("not attempted");
  (void)co_await Retry(
      env_, policy_,
      [&]() -> Task<Status> {
        out = co_await inner_.Head(key);
        co_return out.status();
      });
  co_return out;
}

Task<Result<std::vector<ObjectInfo>>> RetryingReadStore::List(std::string prefix,
                                                              std::string start_after) {
  Result<std::vector<ObjectInfo>> out = Status::Unavailable("not attempted");
  (void)co_await Retry(
      env_, policy_,
      [&]() -> Task<Status> {
        out = co_await inner_.List(prefix, start_after);
        co_return out.status();
      });
  co_return out;
}

}  // namespace portal::objstore
