#include "volume/volume.h"

#include "volume/lsm_volume.h"

namespace portal::volume {

Task<Result<std::shared_ptr<Volume>>> OpenVolume(Env& env, objstore::ObjectStore& store,
                                                 VolumeOptions options) {
  Result<std::shared_ptr<LsmVolume>> v = co_await LsmVolume::Open(env, store, std::move(options));
  if (!v.ok()) co_return v.status();
  co_return std::shared_ptr<Volume>(std::move(*v));
}

}  // namespace portal::volume
