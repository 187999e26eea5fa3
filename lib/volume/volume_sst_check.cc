// Open's check that the store holds every map SST the manifest names (docs/volume.md
// "Damage": a lost map SST). Reads consult this host's metadata cache first, and it may
// hold an SST (its index, its blocks) that the store has lost; without this check such
// damage would go unnoticed while the cache kept the rows, the volume served as whole.
#include <unordered_map>

#include <fmt/format.h>

#include "volume/lsm_volume.h"

namespace portal::volume {

Task<Status> LsmVolume::CheckSstsStored(uint64_t number, const Manifest& m) {
  // One listing (1,000 keys a request on S3) instead of a HEAD per SST: a manifest names
  // up to thousands. It holds orphans too, which GC's discovery wants anyway.
  auto listed = co_await reads_.List("map/");
  if (!listed.ok()) co_return listed.status().WithContext("listing map SSTs");
  std::unordered_map<std::string, uint64_t> stored;  // key -> size
  stored.reserve(listed->size());
  for (const auto& o : *listed) stored.emplace(o.key, o.size);
  // The first SST the listing lacks or holds at another size, described ("": none).
  auto first_damage = [&]() -> std::string {
    for (const auto& level : m.levels) {
      for (const auto& ref : level) {
        auto it = stored.find(ref.key);
        if (it == stored.end())
          return fmt::format("map SST {} is missing from {}", ref.key, store_.url());
        if (it->second != ref.size_bytes)
          return fmt::format("map SST {} is {} bytes in {}, but {} records {}", ref.key, it->second,
                             store_.url(), ManifestKey(number), ref.size_bytes);
      }
    }
    return "";
  };
  const std::string damage = first_damage();
  if (damage.empty()) {
    std::vector<std::string> keys;
    keys.reserve(listed->size());
    for (auto& o : *listed) keys.push_back(std::move(o.key));
    gc_.open_listed_ssts = std::move(keys);
    co_return Status::Ok();
  }
  // A writer that committed past `number` (dropping the SST) and collected it also fits;
  // ReadLatest may also have stopped in a hole below such a writer's latest manifest.
  // Look again, after the listing: only a manifest with nothing above it is damaged.
  auto above = co_await reads_.List("manifest/", ManifestKey(number));
  if (!above.ok()) co_return above.status().WithContext("checking for newer manifests");
  for (const auto& o : *above) {
    uint64_t k;
    if (ParseManifestKey(o.key, &k) && k > number) {
      co_return Status::Unavailable("relist: " + ManifestKey(k) + " appeared");
    }
  }
  co_return Status::Corruption(fmt::format(
      "{}, but the latest manifest {} maps blocks to it: the store is damaged, and this "
      "host's cache must not stand in for it. Nothing was written.",
      damage, ManifestKey(number)));
}

}  // namespace portal::volume
