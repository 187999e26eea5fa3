#include "dst/store_check.h"

#include <optional>
#include <set>

#include <fmt/format.h>

#include "lsm/sst_format.h"
#include "util/assert.h"
#include "util/range_map.h"
#include "volume/segment_format.h"
#include "volume/snapshot.h"

namespace portal::dst {
namespace {

// MemoryStore calls complete without suspending: run them inline.
template <typename T>
T Inline(Task<T> task) {
  std::optional<T> out;
  Start(std::move(task), [&](T v) { out.emplace(std::move(v)); });
  PORTAL_ASSERT(out.has_value(), "MemoryStore call suspended");
  return std::move(*out);
}

std::optional<std::string> GetObject(objstore::MemoryStore& mem, const std::string& key) {
  auto r = Inline(mem.Get(key));
  if (!r.ok()) return std::nullopt;
  return std::move(*r);
}

}  // namespace

std::pair<uint64_t, volume::Manifest> LatestManifest(objstore::MemoryStore& mem,
                                                     const crypto::Keyring* keyring) {
  auto listed = Inline(mem.List("manifest/"));
  PORTAL_ASSERT(listed.ok(), "listing a MemoryStore failed");
  uint64_t latest = 0;
  for (const auto& o : *listed) {
    uint64_t n;
    if (volume::ParseManifestKey(o.key, &n) && n > latest) latest = n;
  }
  if (latest == 0) return {0, {}};
  auto bytes = GetObject(mem, volume::ManifestKey(latest));
  auto m = volume::DecodeManifest(bytes ? *bytes : "", volume::ManifestKey(latest), keyring);
  if (!m.ok()) return {latest, {}};
  return {latest, std::move(*m)};
}

std::optional<volume::SegmentFooter> SegmentFooterOf(objstore::MemoryStore& mem, uint64_t id,
                                                     const crypto::Keyring* keyring) {
  const std::string key = volume::SegmentKey(id);
  auto bytes = GetObject(mem, key);
  if (!bytes) return std::nullopt;
  auto f = volume::DecodeSegmentFooter(*bytes, bytes->size(), key, nullptr, keyring);
  if (!f.ok()) return std::nullopt;
  return std::move(*f);
}

std::optional<std::string> ReadObject(objstore::MemoryStore& mem, const std::string& key) {
  return GetObject(mem, key);
}

void WriteObject(objstore::MemoryStore& mem, const std::string& key, std::string bytes) {
  PORTAL_CHECK(Inline(mem.Put(key, std::move(bytes))).ok());
}

void DeleteObject(objstore::MemoryStore& mem, const std::string& key) {
  PORTAL_CHECK(Inline(mem.Delete(key)).ok());
}

std::vector<std::string> ListKeys(objstore::MemoryStore& mem, const std::string& prefix) {
  auto listed = Inline(mem.List(prefix));
  PORTAL_ASSERT(listed.ok(), "listing a MemoryStore failed");
  std::vector<std::string> keys;
  for (const auto& o : *listed) keys.push_back(o.key);
  return keys;
}

void CopyStore(objstore::MemoryStore& from, objstore::MemoryStore& to) {
  auto listed = Inline(from.List(""));
  PORTAL_ASSERT(listed.ok(), "listing a MemoryStore failed");
  for (const auto& o : *listed) {
    auto bytes = GetObject(from, o.key);
    if (bytes) PORTAL_CHECK(Inline(to.Put(o.key, std::move(*bytes))).ok());
  }
}

std::string CheckStore(objstore::MemoryStore& mem, StoreFacts* facts, uint32_t block_size,
                       uint64_t size_bytes, std::string* summary,
                       const crypto::Keyring* keyring) {
  auto listed = Inline(mem.List("manifest/"));
  PORTAL_ASSERT(listed.ok(), "listing a MemoryStore failed");
  uint64_t latest = 0;
  for (const auto& o : *listed) {
    uint64_t n;
    if (volume::ParseManifestKey(o.key, &n) && n > latest) latest = n;
  }
  if (latest == 0) return facts->max_manifest == 0 ? "" : "every manifest is gone";
  const std::string mkey = volume::ManifestKey(latest);
  auto mbytes = GetObject(mem, mkey);
  if (!mbytes) return mkey + " listed but unreadable";
  auto decoded = volume::DecodeManifest(*mbytes, mkey, keyring);
  if (!decoded.ok()) return "latest manifest: " + decoded.status().ToString();
  const volume::Manifest& m = *decoded;

  if (latest < facts->max_manifest) {
    return fmt::format("latest manifest went back from {} to {}", facts->max_manifest, latest);
  }
  if (m.epoch < facts->max_epoch) {
    return fmt::format("{}: epoch {} below an earlier manifest's {}", mkey, m.epoch,
                       facts->max_epoch);
  }
  if (m.next_segment_id < facts->max_next_segment) {
    return fmt::format("{}: next_segment_id {} below an earlier manifest's {}", mkey,
                       m.next_segment_id, facts->max_next_segment);
  }
  facts->max_manifest = latest;
  facts->max_epoch = m.epoch;
  facts->max_next_segment = m.next_segment_id;
  if (m.block_size != block_size || m.size_bytes != size_bytes) {
    return fmt::format("{}: geometry {}x{} is not the device's {}x{}", mkey, m.block_size,
                       m.size_bytes, block_size, size_bytes);
  }
  if (m.applied_segment >= m.next_segment_id) {
    return fmt::format("{}: applied_segment {} >= next_segment_id {}", mkey, m.applied_segment,
                       m.next_segment_id);
  }
  if (m.epoch_manifest == 0 || m.epoch_manifest > latest) {
    return fmt::format("{}: bad epoch_manifest {}", mkey, m.epoch_manifest);
  }
  facts->openers.insert(m.epoch_manifest);
  for (uint64_t n : facts->openers) {
    if (!GetObject(mem, volume::ManifestKey(n))) {
      return fmt::format("epoch-opening manifest {} was deleted", n);
    }
  }
  for (const auto& [id, epoch] : facts->fences) {
    const std::string key = volume::SegmentKey(id);
    auto bytes = GetObject(mem, key);
    if (!bytes) return fmt::format("fence segment {} (epoch {}) was deleted", key, epoch);
    auto f = volume::DecodeSegmentFooter(*bytes, bytes->size(), key, nullptr, keyring);
    if (!f.ok()) return "fence segment: " + f.status().ToString();
    if (!f->is_fence() || f->epoch != epoch) {
      return fmt::format("{} is not epoch {}'s fence (epoch {}, {} extents)", key, epoch,
                         f->epoch, f->extents.size());
    }
  }

  // Map SSTs and the segments they reference.
  std::map<uint64_t, std::optional<volume::SegmentFooter>> segs;
  std::vector<std::vector<std::vector<lsm::Extent>>> contents(m.levels.size());
  std::vector<std::pair<std::string, lsm::Extent>> missing;  // (SST, extent) -> no segment
  uint64_t ssts = 0;
  for (size_t level = 0; level < m.levels.size(); ++level) {
    const auto& refs = m.levels[level];
    for (size_t i = 0; i < refs.size(); ++i) {
      const lsm::SstRef& ref = refs[i];
      ++ssts;
      contents[level].emplace_back();
      if (ref.min_block >= ref.end_block || ref.end_block * uint64_t{block_size} > size_bytes) {
        return fmt::format("{}: SST {} has key range [{}, {})", mkey, ref.key, ref.min_block,
                           ref.end_block);
      }
      if (level > 0 && i > 0 && refs[i - 1].end_block > ref.min_block) {
        return fmt::format("{}: L{} SSTs {} and {} overlap or are out of order", mkey, level,
                           refs[i - 1].key, ref.key);
      }
      auto bytes = GetObject(mem, ref.key);
      if (!bytes) return fmt::format("{} references missing SST {}", mkey, ref.key);
      if (bytes->size() != ref.size_bytes) {
        return fmt::format("SST {} is {} bytes, manifest says {}", ref.key, bytes->size(),
                           ref.size_bytes);
      }
      auto idx = lsm::DecodeSstIndex(*bytes, bytes->size(), ref.key, keyring);
      if (!idx.ok()) return idx.status().ToString();
      if (idx->min_block != ref.min_block || idx->end_block != ref.end_block ||
          idx->extent_count != ref.extent_count || idx->data_blocks != ref.data_blocks) {
        return fmt::format("SST {} disagrees with its manifest entry", ref.key);
      }
      uint64_t prev_end = ref.min_block, count = 0, data = 0;
      std::map<uint64_t, uint64_t> summary_seen;
      for (const auto& entry : idx->blocks) {
        auto extents = lsm::DecodeSstBlock(
            std::string_view(*bytes).substr(entry.offset, entry.length), entry, ref.key,
            idx->key.get());
        if (!extents.ok()) return extents.status().ToString();
        for (const lsm::Extent& e : *extents) {
          if (e.first < prev_end || e.end <= e.first || e.end > ref.end_block) {
            return fmt::format("SST {}: extent {} out of order or out of [{}, {})", ref.key,
                               lsm::ToString(e), ref.min_block, ref.end_block);
          }
          prev_end = e.end;
          ++count;
          contents[level].back().push_back(e);
          if (!e.loc.is_data()) continue;
          data += e.length();
          summary_seen[e.loc.segment] += e.length();
          if (e.loc.segment > m.applied_segment) {
            return fmt::format("SST {} maps {} to segment {} above applied_segment {}", ref.key,
                               lsm::ToString(e), e.loc.segment, m.applied_segment);
          }
          auto [it, fresh] = segs.try_emplace(e.loc.segment);
          if (fresh) {
            const std::string skey = volume::SegmentKey(e.loc.segment);
            auto sb = GetObject(mem, skey);
            if (sb) {
              auto f = volume::DecodeSegmentFooter(*sb, sb->size(), skey, nullptr, keyring);
              if (!f.ok()) return f.status().ToString();
              it->second = std::move(*f);
            }
          }
          if (!it->second) {
            missing.emplace_back(ref.key, e);
            continue;
          }
          if (e.loc.index + e.length() > it->second->data_blocks) {
            return fmt::format("SST {} maps {} past segment {}'s {} data blocks", ref.key,
                               lsm::ToString(e), e.loc.segment, it->second->data_blocks);
          }
        }
      }
      if (count != ref.extent_count || data != ref.data_blocks ||
          summary_seen != idx->segment_blocks) {
        return fmt::format("SST {}: counts or segment summary do not add up", ref.key);
      }
    }
  }
  if (!missing.empty()) {
    // What an open would see of the committed map: deepest level first, L0 oldest first.
    RangeMap<lsm::Loc> visible;
    for (size_t level = contents.size(); level-- > 0;) {
      for (size_t i = contents[level].size(); i-- > 0;) {
        for (const lsm::Extent& e : contents[level][i]) visible.Assign(e.first, e.end, e.loc);
      }
    }
    for (const auto& [key, e] : missing) {
      bool shown = false;
      visible.ForEach(e.first, e.end, [&](uint64_t, uint64_t, const lsm::Loc& loc) {
        shown |= loc.is_data() && loc.segment == e.loc.segment;
        return !shown;
      });
      return fmt::format("SST {} ({}) maps {} to missing {} ({})", key, mkey, lsm::ToString(e),
                         volume::SegmentKey(e.loc.segment),
                         shown ? "visible in the committed map: data loss"
                               : "shadowed by newer map entries, still referenced");
    }
  }
  // Snapshots: each listed object exists, decodes, matches its entry and the device, and
  // everything it pins exists: its SSTs (same checks as the live map's) and every segment
  // they reference, which must also be in its `segments` list (what GC keeps for it).
  uint64_t snap_ssts = 0;
  for (const auto& snap : m.snapshots) {
    auto sbytes = GetObject(mem, snap.key);
    if (!sbytes) {
      return fmt::format("{} lists snapshot '{}' whose object {} is missing", mkey, snap.name,
                         snap.key);
    }
    auto obj = volume::DecodeSnapshotObject(*sbytes, snap.key, keyring);
    if (!obj.ok()) return "snapshot object: " + obj.status().ToString();
    if (obj->name != snap.name || obj->id != snap.id || obj->size_bytes != size_bytes ||
        obj->block_size != block_size) {
      return fmt::format("snapshot object {} disagrees with {} or the device", snap.key, mkey);
    }
    const std::set<uint64_t> pinned(obj->segments.begin(), obj->segments.end());
    for (const auto& level : obj->levels) {
      for (const lsm::SstRef& ref : level) {
        ++snap_ssts;
        auto bytes = GetObject(mem, ref.key);
        if (!bytes) {
          return fmt::format("snapshot '{}' pins SST {}, which is missing", snap.name, ref.key);
        }
        auto idx = lsm::DecodeSstIndex(*bytes, bytes->size(), ref.key, keyring);
        if (!idx.ok()) return idx.status().ToString();
        for (const auto& [seg, n] : idx->segment_blocks) {
          if (!pinned.count(seg)) {
            return fmt::format("snapshot '{}': SST {} references segment {}, not in its pins",
                               snap.name, ref.key, seg);
          }
          auto [it, fresh] = segs.try_emplace(seg);
          if (fresh) {
            const std::string skey = volume::SegmentKey(seg);
            auto sb = GetObject(mem, skey);
            if (sb) {
              auto f = volume::DecodeSegmentFooter(*sb, sb->size(), skey, nullptr, keyring);
              if (!f.ok()) return f.status().ToString();
              it->second = std::move(*f);
            }
          }
          if (!it->second) {
            return fmt::format("snapshot '{}' (SST {}) references missing {}: data loss",
                               snap.name, ref.key, volume::SegmentKey(seg));
          }
        }
      }
    }
  }
  if (summary) {
    *summary = fmt::format("manifest={} epoch={} applied={} ssts={} snapshots={} snap_ssts={} "
                           "segs_referenced={}",
                           latest, m.epoch, m.applied_segment, ssts, m.snapshots.size(),
                           snap_ssts, segs.size());
  }
  return "";
}

}  // namespace portal::dst
