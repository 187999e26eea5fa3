#include "daemon/owner_record.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "util/log.h"
#include "util/rfc3339.h"

namespace portal::daemon {

namespace {
auto Log() { return log::Get("portalbd"); }
}  // namespace

std::string OwnerKey(std::string_view volume) { return fmt::format("owners/{}.json", volume); }

std::string EncodeOwnerRecord(const OwnerRecord& r) {
  nlohmann::ordered_json j;
  j["volume"] = r.volume;
  j["epoch"] = r.epoch;
  j["node"] = r.node;
  j["control"] = r.control;
  j["since"] = r.since;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<OwnerRecord> DecodeOwnerRecord(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("owner record is not a JSON object");
  }
  OwnerRecord r;
  for (auto [key, out] : {std::pair{"volume", &r.volume}, std::pair{"node", &r.node},
                          std::pair{"control", &r.control}, std::pair{"since", &r.since}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return Status::Corruption(fmt::format("owner record has no '{}' string", key));
    }
    *out = it->get<std::string>();
  }
  auto epoch = j.find("epoch");
  if (epoch == j.end() || !epoch->is_number_unsigned()) {
    return Status::Corruption("owner record has no 'epoch' number");
  }
  r.epoch = epoch->get<uint64_t>();
  return r;
}

Task<Result<std::optional<OwnerRecord>>> FindOwner(objstore::ObjectStore& root,
                                                   std::string volume) {
  const std::string key = OwnerKey(volume);
  auto text = co_await root.Get(key);
  if (text.status().IsNotFound()) co_return std::optional<OwnerRecord>();
  if (!text.ok()) co_return text.status().WithContext("reading " + key);
  auto r = DecodeOwnerRecord(*text);
  if (!r.ok()) co_return r.status().WithContext(key);
  if (r->volume != volume) {
    co_return Status::Corruption(fmt::format("{} names volume '{}'", key, r->volume));
  }
  co_return std::optional<OwnerRecord>(std::move(*r));
}

Task<Status> OwnerRecords::Publish(std::string volume, uint64_t epoch) {
  // Read first: an open that lost a race to a newer one must not put its older record
  // over the newer owner's (a race between this read and the put remains; readers check
  // with the owner, and the fence keeps the older one from writing anyway).
  auto existing = co_await FindOwner(root_, volume);
  if (existing.ok() && existing->has_value() && (*existing)->epoch > epoch) {
    Log()->warn("owner record of volume {} names epoch {} > ours {}: not replaced", volume,
                (*existing)->epoch, epoch);
    co_return Status::Ok();
  }
  OwnerRecord r{volume, epoch, node_, control_, FormatRfc3339(env_.WallNanos())};
  Status st = co_await root_.Put(OwnerKey(volume), EncodeOwnerRecord(r));
  if (!st.ok()) co_return st.WithContext("writing the owner record of volume " + volume);
  Log()->info("owner record written volume={} epoch={} node={} control={}", volume, epoch, node_,
              control_);
  co_return Status::Ok();
}

Task<Status> OwnerRecords::Withdraw(std::string volume, uint64_t epoch) {
  auto existing = co_await FindOwner(root_, volume);
  if (!existing.ok() && !existing.status().IsCorruption()) co_return existing.status();
  if (!existing.ok() || !existing->has_value() || (*existing)->epoch != epoch ||
      (*existing)->node != node_) {
    co_return Status::Ok();  // gone already, or another owner's now
  }
  CO_RETURN_IF_ERROR(co_await root_.Delete(OwnerKey(volume)));
  Log()->info("owner record removed volume={} epoch={}", volume, epoch);
  co_return Status::Ok();
}

Task<Status> OwnerRecords::Remove(std::string volume) {
  co_return co_await root_.Delete(OwnerKey(volume));
}

}  // namespace portal::daemon
