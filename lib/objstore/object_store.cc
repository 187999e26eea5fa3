#include "objstore/object_store.h"

#include "objstore/file_store.h"
#include "objstore/memory_store.h"
#include "objstore/s3_store.h"

namespace portal::objstore {

Task<Status> ObjectStore::PutIfAbsentRope(std::string key, Rope data) {
  co_return co_await PutIfAbsent(std::move(key), std::move(data).Flatten());
}

Result<std::unique_ptr<ObjectStore>> OpenStore(const std::string& url, Env& env,
                                               const StoreOptions& options) {
  if (url == "memory://") return std::unique_ptr<ObjectStore>(new MemoryStore(options.buffer_pool));

  if (url.starts_with("file://")) {
    std::string path = url.substr(7);
    if (path.empty() || path[0] != '/') {
      return Status::InvalidArgument("storage URL " + url +
                                     ": file:// needs an absolute path (file:///dir)");
    }
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    FileStore::Options file_options;
    file_options.buffer_pool = options.buffer_pool;
    return std::unique_ptr<ObjectStore>(new FileStore(env, std::move(path), file_options));
  }

  if (url.starts_with("s3://")) {
    std::string rest = url.substr(5);
    size_t slash = rest.find('/');
    std::string bucket = rest.substr(0, slash);
    std::string prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (bucket.empty()) return Status::InvalidArgument("storage URL " + url + ": no bucket");
    if (!prefix.empty() && prefix.back() != '/') prefix.push_back('/');
    s3::ClientOptions client_options;
    if (options.s3) {
      client_options = *options.s3;
    } else {
      auto from_env = s3::ClientOptionsFromEnv();
      if (!from_env.ok()) return from_env.status();
      client_options = std::move(*from_env);
    }
    client_options.buffer_pool = options.buffer_pool;
    auto client = s3::Client::Create(env, bucket, std::move(client_options), options.s3_transport);
    if (!client.ok()) return client.status().WithContext("storage URL " + url);
    return std::unique_ptr<ObjectStore>(new S3Store(std::move(*client), std::move(prefix), url));
  }

  return Status::InvalidArgument("storage URL " + url +
                                 ": expected memory://, file:///path or s3://bucket/prefix");
}

}  // namespace portal::objstore
