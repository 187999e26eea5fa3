#include "dst/late_store.h"

namespace portal::dst {
namespace {

Task<void> LandLater(objstore::ObjectStore& shared, Env& env, uint64_t delay_ns, std::string key,
                     std::string data, std::function<void(const std::string&, bool)> landed) {
  co_await SleepFor(env, delay_ns);
  Status st = co_await shared.PutIfAbsent(key, std::move(data));
  if (landed) landed(key, st.ok());
}

}  // namespace

LateLandingStore::LateLandingStore(objstore::ObjectStore& shared, Env& env, uint64_t seed,
                                   uint32_t ppm, uint64_t max_delay_ns,
                                   std::function<bool()> enabled,
                                   std::function<void(const std::string&, bool)> landed)
    : BorrowedStore(shared),
      shared_(shared),
      env_(env),
      rng_(seed),
      ppm_(ppm),
      max_delay_ns_(max_delay_ns),
      enabled_(std::move(enabled)),
      landed_(std::move(landed)) {}

bool LateLandingStore::Late(std::string_view key) {
  if (!key.starts_with("seg/")) return false;
  const uint64_t roll = rng_.Below(1'000'000), pick = rng_.Next();
  last_delay_ns_ = max_delay_ns_ > 0 ? 1 + pick % max_delay_ns_ : 1;
  return roll < ppm_ && enabled_ && enabled_();
}

void LateLandingStore::Land(std::string key, std::string data) {
  Start(LandLater(shared_, env_, last_delay_ns_, std::move(key), std::move(data), landed_));
}

Task<Status> LateLandingStore::PutIfAbsent(std::string key, std::string data) {
  if (!Late(key)) co_return co_await BorrowedStore::PutIfAbsent(std::move(key), std::move(data));
  Land(std::move(key), std::move(data));
  co_return Status::Unavailable("dst: request timed out (it may still land)");
}

Task<Status> LateLandingStore::PutIfAbsentRope(std::string key, objstore::Rope data) {
  if (!Late(key)) {
    co_return co_await BorrowedStore::PutIfAbsentRope(std::move(key), std::move(data));
  }
  Land(std::move(key), std::move(data).Flatten());
  co_return Status::Unavailable("dst: request timed out (it may still land)");
}

}  // namespace portal::dst
