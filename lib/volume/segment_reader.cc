#include "volume/segment_reader.h"

#include <cstring>

#include <fmt/format.h>

#include "cache/disk_cache.h"
#include "objstore/retrying_store.h"
#include "util/coding.h"
#include "volume/manifest.h"

namespace portal::volume {
namespace {
constexpr uint64_t kTailGuess = 256 * 1024;

std::string ChunkKey(uint64_t id, size_t chunk) { return fmt::format("c/{}/{}", id, chunk); }
std::string FooterKey(uint64_t id) { return fmt::format("sf/{}", id); }

uint64_t FooterCharge(const SegmentFooter& f) {
  return sizeof(f) + f.chunks.size() * sizeof(ChunkInfo);
}
}  // namespace

uint64_t SegmentReader::KnownSize(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = sizes_.find(id);
  return it == sizes_.end() ? 0 : it->second;
}

void SegmentReader::NoteSize(uint64_t id, uint64_t size) {
  std::lock_guard lock(mu_);
  sizes_[id] = size;
}

void SegmentReader::Forget(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    sizes_.erase(id);
  }
  cache_.Erase(FooterKey(id));
}

void SegmentReader::Remember(uint64_t id, uint64_t size, const SegmentFooter& footer) {
  NoteSize(id, size);
  SegmentFooter chunks_only = footer;
  chunks_only.extents.clear();
  chunks_only.extents.shrink_to_fit();
  uint64_t charge = FooterCharge(chunks_only);
  cache_.Insert(FooterKey(id),
                std::make_shared<const cache::CacheValue<SegmentFooter>>(std::move(chunks_only)),
                charge);
}

Task<Result<SegmentFooter>> SegmentReader::ReadFooter(uint64_t id, uint64_t size,
                                                      uint64_t* footer_checksum) {
  const std::string key = SegmentKey(id);
  if (footers_) {  // cached as: object size (8 bytes, LE) + the object's tail
    // (not in the if's init-statement: GCC 12 miscompiles co_await there)
    std::optional<std::string> cached = co_await footers_->Get(key);
    if (cached && cached->size() > 8) {
      uint64_t cached_size = LoadLE64(reinterpret_cast<const uint8_t*>(cached->data()));
      auto f = DecodeSegmentFooter(std::string_view(*cached).substr(8), cached_size, key,
                                   footer_checksum);
      if (f.ok() && f->segment_id == id && (size == 0 || size == cached_size)) {
        NoteSize(id, cached_size);
        co_return std::move(*f);
      }
    }
  }
  if (size == 0) size = KnownSize(id);
  if (size == 0) {
    CO_ASSIGN_OR_RETURN(objstore::ObjectInfo info, co_await store_.Head(key));
    size = info.size;
  }
  if (size < kSegmentTrailerSize) co_return Status::Corruption("segment " + key + " is too short");
  std::string tail;
  uint64_t need = 0;
  Result<SegmentFooter> decoded = Status::Corruption("not read");
  CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
      [&]() -> Task<Status> {
        uint64_t guess = std::min(size, kTailGuess);
        CO_ASSIGN_OR_RETURN(tail,
                            co_await store_.Get(key, objstore::GetRange{size - guess, guess}));
        CO_ASSIGN_OR_RETURN(uint32_t footer_len, ParseSegmentTrailer(tail, key));
        need = uint64_t{footer_len} + kSegmentTrailerSize;
        if (need > tail.size() && need <= size) {
          CO_ASSIGN_OR_RETURN(tail,
                              co_await store_.Get(key, objstore::GetRange{size - need, need}));
        }
        decoded = DecodeSegmentFooter(tail, size, key, footer_checksum);
        co_return decoded.status();
      },
      corrupt_refetches_));
  SegmentFooter f = std::move(*decoded);
  if (f.segment_id != id) {
    co_return Status::Corruption(fmt::format("segment {} names itself {}", key, f.segment_id));
  }
  if (footers_ && need <= tail.size()) {
    std::string entry;
    PutFixed64(&entry, size);
    entry.append(tail, tail.size() - need, need);
    footers_->Put(key, std::move(entry));
  }
  NoteSize(id, size);
  co_return f;
}

Task<Result<std::shared_ptr<const SegmentFooter>>> SegmentReader::Chunks(uint64_t id) {
  auto v = co_await cache::GetTyped<SegmentFooter>(
      cache_, FooterKey(id), [&]() -> Task<Result<std::pair<SegmentFooter, uint64_t>>> {
        CO_ASSIGN_OR_RETURN(SegmentFooter f, co_await ReadFooter(id, 0));
        f.extents.clear();
        f.extents.shrink_to_fit();
        uint64_t charge = FooterCharge(f);
        co_return std::make_pair(std::move(f), charge);
      });
  if (!v.ok()) co_return v.status();
  co_return std::shared_ptr<const SegmentFooter>(*v, &(*v)->value);
}

void SegmentReader::SetDiskCacheScope(const std::string& store_url,
                                      const std::string& volume_uuid) {
  if (!options_.disk_cache || options_.read_partial_raw_chunks) return;
  std::lock_guard lock(mu_);
  disk_scope_ = store_url + "\n" + volume_uuid;
}

std::string SegmentReader::DiskKey(const SegmentFooter& footer, size_t chunk) {
  std::lock_guard lock(mu_);
  if (disk_scope_.empty()) return "";
  // Everything that names these bytes for good. The epoch and the checksum make a dead
  // writer's chunk at a reused id (a store restored from a backup, a wiped bucket) a
  // different key, and Get checks the checksum again against the bytes it reads.
  const ChunkInfo& c = footer.chunks[chunk];
  return fmt::format("{}\nseg/{} chunk {} epoch {} sum {:016x} blocks {}x{}", disk_scope_,
                     footer.segment_id, chunk, footer.epoch, c.checksum, c.raw_blocks,
                     footer.block_size);
}

void SegmentReader::KeepWritten(const SegmentFooter& footer,
                                std::function<objstore::Rope()> data) {
  if (footer.chunks.empty() || DiskKey(footer, 0).empty()) return;
  std::vector<cache::DiskCache::PutItem> items;
  std::vector<uint64_t> starts;  // of each chunk in the data stream
  const uint64_t chunk_bytes = uint64_t{footer.blocks_per_chunk} * footer.block_size;
  for (size_t c = 0; c < footer.chunks.size(); ++c) {
    const ChunkInfo& chunk = footer.chunks[c];
    items.push_back({DiskKey(footer, c), chunk.checksum, chunk.raw_blocks * footer.block_size});
    starts.push_back(c * chunk_bytes);
  }
  // The stream is made once, on the blocking pool, by the first payload asked for.
  auto stream = std::make_shared<std::optional<objstore::Rope>>();
  options_.disk_cache->Put(
      std::move(items), [stream, data = std::move(data), starts = std::move(starts),
                         chunk_bytes](size_t i) {
        if (!*stream) *stream = data();
        return (*stream)->Read(starts[i], chunk_bytes);
      });
}

Task<Status> SegmentReader::ReadBlocks(uint64_t id, uint64_t index, uint64_t n, uint8_t* dest) {
  CO_ASSIGN_OR_RETURN(auto footer, co_await Chunks(id));
  const std::string key = SegmentKey(id);
  if (index > footer->data_blocks || n > footer->data_blocks - index) {
    co_return Status::Corruption(fmt::format(
        "map points at blocks [{}, {}) of segment {}, which holds {}", index, index + n, key,
        footer->data_blocks));
  }
  const uint64_t bs = footer->block_size;
  const uint64_t per_chunk = footer->blocks_per_chunk;
  while (n > 0) {
    const size_t c = footer->chunk_of(index);
    const ChunkInfo& chunk = footer->chunks[c];
    const uint64_t off = index - c * per_chunk;
    const uint64_t take = std::min(n, chunk.raw_blocks - off);
    if (chunk.codec == ChunkCodec::kRaw && options_.read_partial_raw_chunks) {
      // Only the length can be checked here: the chunk's checksum covers all of it.
      CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
          [&]() -> Task<Status> {
            CO_ASSIGN_OR_RETURN(
                std::string bytes,
                co_await store_.Get(key, objstore::GetRange{chunk.offset + off * bs, take * bs}));
            if (bytes.size() != take * bs) co_return Status::Corruption("short read of " + key);
            std::memcpy(dest, bytes.data(), bytes.size());
            co_return Status::Ok();
          },
          corrupt_refetches_));
    } else {
      auto decoded = co_await cache::GetTyped<std::string>(
          cache_, ChunkKey(id, c), [&]() -> Task<Result<std::pair<std::string, uint64_t>>> {
            std::string raw;
            // The disk cache, right before the GET and right after it (verified bytes only).
            const std::string disk_key = DiskKey(*footer, c);
            std::optional<std::string> kept;
            if (!disk_key.empty()) {
              kept = co_await options_.disk_cache->Get(disk_key, chunk.checksum,
                                                       chunk.raw_blocks * bs);
            }
            if (kept) {
              raw = std::move(*kept);
            } else {
              CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(
                  [&]() -> Task<Status> {
                    CO_ASSIGN_OR_RETURN(std::string stored,
                                        co_await store_.Get(key, objstore::GetRange{
                                                                     chunk.offset, chunk.stored_len}));
                    CO_ASSIGN_OR_RETURN(raw,
                                        DecodeChunk(stored, chunk, static_cast<uint32_t>(bs),
                                                    fmt::format("{} (chunk {})", key, c)));
                    co_return Status::Ok();
                  },
                  corrupt_refetches_));
              if (!disk_key.empty()) options_.disk_cache->Put(disk_key, chunk.checksum, raw);
            }
            uint64_t charge = raw.size() + 64;
            co_return std::make_pair(std::move(raw), charge);
          });
      if (!decoded.ok()) co_return decoded.status();
      std::memcpy(dest, (*decoded)->value.data() + off * bs, take * bs);
    }
    dest += take * bs;
    index += take;
    n -= take;
  }
  co_return Status::Ok();
}

}  // namespace portal::volume
