#include "volume/stored_volume.h"

#include "volume/manifest_log.h"

namespace portal::volume {

Task<Result<std::optional<Manifest>>> ReadNewestManifest(Env& env, objstore::ObjectStore& store,
                                                         const crypto::Keyring* keyring) {
  ManifestLog log(store, env, nullptr, keyring);
  auto latest = co_await log.ReadLatest(0);
  if (latest.status().IsNotFound()) co_return std::optional<Manifest>();
  CO_RETURN_IF_ERROR(latest.status());
  co_return std::optional<Manifest>(std::move(latest->second));
}

}  // namespace portal::volume
