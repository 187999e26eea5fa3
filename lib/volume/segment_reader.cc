#include "volume/segment_reader.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "cache/disk_cache.h"
#include "objstore/retrying_store.h"
#include "util/buffer_pool.h"
#include "util/coding.h"
#include "volume/manifest.h"

namespace portal::volume {
namespace {
constexpr uint64_t kTailGuess = 256 * 1024;



uint64_t FooterCharge(const SegmentFooter& f) {
  return sizeof(f) + f.chunks.size() * sizeof(ChunkInfo);
}

// A decoded, verified chunk as the block cache holds it ("c/<segment>/<chunk>").
struct ChunkEntry final : cache::CacheEntry {
  // `read_ahead`: the chunk was read ahead; its counters learn whether a read used it.
  ChunkEntry(std::string b, std::shared_ptr<ReadAheadCounters> read_ahead)
      : bytes(std::move(b)), read_ahead_(std::move(read_ahead)), unread_(read_ahead_ != nullptr) {}
  ~ChunkEntry() override {
    if (unread_.load(std::memory_order_relaxed)) {
      read_ahead_->wasted.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // A read used the chunk: the first use of one read ahead is a read-ahead hit.
  void NoteRead() const {
    if (unread_.load(std::memory_order_relaxed) && unread_.exchange(false)) {
      read_ahead_->hits.fetch_add(1, std::memory_order_relaxed);
    }
  }

  const std::string bytes;

 private:
  const std::shared_ptr<ReadAheadCounters> read_ahead_;  // null: fetched for a read
  mutable std::atomic<bool> unread_;
};

uint64_t Charge(const ChunkEntry& e) { return e.bytes.size() + 64; }
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

std::string SegmentReader::FooterEntry(const objstore::Rope& object) const {
  // memory:// reads footers from this process already; no cache, nothing to keep.
  if (!footers_ || options_.read_partial_raw_chunks) return "";
  const uint64_t size = object.size();
  if (size < kSegmentTrailerSize) return "";
  auto footer_len =
      ParseSegmentTrailer(object.Read(size - kSegmentTrailerSize, kSegmentTrailerSize), "");
  if (!footer_len.ok()) return "";
  const uint64_t need = uint64_t{*footer_len} + kSegmentTrailerSize;
  if (need > size) return "";
  std::string entry;  // as ReadFooter keeps it: object size (8 bytes, LE) + the tail
  PutFixed64(&entry, size);
  entry += object.Read(size - need, need);
  return entry;
}

void SegmentReader::KeepFooter(uint64_t id, std::string entry) {
  if (footers_ && !entry.empty()) footers_->Put(SegmentKey(id), std::move(entry));
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
                                   footer_checksum, options_.keyring);
      if (f.ok() && f->segment_id == id && f->block_size == options_.block_size &&
          (size == 0 || size == cached_size)) {
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
        decoded = DecodeSegmentFooter(tail, size, key, footer_checksum, options_.keyring);
        co_return decoded.status();
      },
      corrupt_refetches_));
  SegmentFooter f = std::move(*decoded);
  if (f.segment_id != id) {
    co_return Status::Corruption(fmt::format("segment {} names itself {}", key, f.segment_id));
  }
  // Reads copy footer.block_size bytes a block into buffers sized by the volume's.
  if (f.block_size != options_.block_size) {
    co_return Status::Corruption(fmt::format("segment {} has block size {}; the volume's is {}",
                                             key, f.block_size, options_.block_size));
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
  std::vector<cache::DiskCache::PutItem> items;
  std::vector<uint64_t> starts;  // of each chunk in the data stream
  const uint64_t chunk_bytes = uint64_t{footer.blocks_per_chunk} * footer.block_size;
  for (size_t c = 0; c < footer.chunks.size(); ++c) {
    const ChunkInfo& chunk = footer.chunks[c];
    std::string key = DiskKey(footer, c);
    if (key.empty()) return;  // no disk cache (or not yet scoped)
    items.push_back({std::move(key), chunk.checksum, chunk.raw_blocks * footer.block_size});
    starts.push_back(c * chunk_bytes);
  }
  if (items.empty()) return;  // an empty segment (a fence)
  // The stream is made once, on the blocking pool, by the first payload asked for.
  auto stream = std::make_shared<std::optional<objstore::Rope>>();
  options_.disk_cache->Put(
      std::move(items), [stream, data = std::move(data), starts = std::move(starts),
                         chunk_bytes](size_t i) {
        if (!*stream) *stream = data();
        return (*stream)->Read(starts[i], chunk_bytes);
      });
}

Task<Status> SegmentReader::ReadBlocks(uint64_t id, uint64_t index, uint64_t n, uint8_t* dest,
                                       ReadAhead* ra) {
  CO_ASSIGN_OR_RETURN(auto footer, co_await Chunks(id));
  const std::string key = SegmentKey(id);
  if (index > footer->data_blocks || n > footer->data_blocks - index) {
    co_return Status::Corruption(fmt::format(
        "map points at blocks [{}, {}) of segment {}, which holds {}", index, index + n, key,
        footer->data_blocks));
  }
  if (n == 0) co_return Status::Ok();
  if (!options_.read_partial_raw_chunks) {
    co_return co_await ReadCached(id, *footer, index, n, dest, ra);
  }
  const uint64_t bs = footer->block_size;
  const uint64_t per_chunk = footer->blocks_per_chunk;
  while (n > 0) {
    const size_t c = footer->chunk_of(index);
    const ChunkInfo& chunk = footer->chunks[c];
    const uint64_t off = index - c * per_chunk;
    const uint64_t take = std::min(n, chunk.raw_blocks - off);
    if (chunk.codec == ChunkCodec::kRaw && !footer->key) {  // sealed: whole chunks only
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
      CO_RETURN_IF_ERROR(co_await ReadCached(id, *footer, index, take, dest, ra));
    }
    dest += take * bs;
    index += take;
    n -= take;
  }
  co_return Status::Ok();
}

Task<Status> SegmentReader::ReadCached(uint64_t id, const SegmentFooter& footer, uint64_t index,
                                       uint64_t n, uint8_t* dest, ReadAhead* ra) {
  using Flight = cache::BlockCache::Flight;
  const uint64_t bs = footer.block_size;
  const uint64_t per_chunk = footer.blocks_per_chunk;
  const size_t c0 = footer.chunk_of(index);
  const size_t count = footer.chunk_of(index + n - 1) + 1 - c0;
  // Chunks the read covers whole, not in memory but on local disk: read from the disk
  // cache straight into `dest` (verified there), all in one job, and not kept in memory.
  // A sequential stream read this way costs one copy out of the page cache and one hash,
  // instead of a fresh chunk in the block cache (its allocation, page faults and copy)
  // and a second copy out of it. The chunks it does not find take the way below.
  const std::vector<bool> direct = co_await ReadFromDisk(id, footer, index, n, dest);
  std::vector<std::shared_ptr<const ChunkEntry>> got(count);
  std::vector<std::shared_ptr<Flight>> flights(count);
  std::vector<bool> lead(count, false);
  for (size_t i = 0; i < count; ++i) {
    if (direct[i]) continue;
    cache::BlockCache::Claimed c = cache_.Claim(ChunkKey(id, c0 + i));
    if (c.hit) {
      got[i] = std::static_pointer_cast<const ChunkEntry>(c.hit);
    } else if (c.lead) {
      lead[i] = true;
    } else {
      flights[i] = std::move(c.flight);
    }
  }
  // Our own chunks first, each run of adjacent ones in one GET; then the ones others fetch
  // (ours finished first: two reads each waiting for the other's chunks cannot deadlock).
  // Every claimed chunk is finished, failed or not, or its waiters would wait forever.
  Status st;
  for (size_t i = 0; i < count;) {
    if (!lead[i]) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < count && lead[j]) ++j;
    std::vector<std::string> chunks;
    if (st.ok()) {
      auto fetched = co_await FetchChunks(store_, id, footer, c0 + i, j - i, true);
      if (fetched.ok()) {
        chunks = std::move(*fetched);
      } else {
        st = fetched.status();
      }
    }
    for (size_t k = i; k < j; ++k) {
      const std::string ck = ChunkKey(id, c0 + k);
      if (!st.ok()) {
        cache_.Finish(ck, st, 0);
        continue;
      }
      auto e = std::make_shared<const ChunkEntry>(std::move(chunks[k - i]), nullptr);
      cache_.Finish(ck, std::shared_ptr<const cache::CacheEntry>(e), Charge(*e));
      got[k] = std::move(e);
    }
    i = j;
  }
  CO_RETURN_IF_ERROR(st);
  // A read-ahead GET that failed, or that takes longer than a GET should (its store may be
  // retrying inside the call): its chunks are fetched here rather than waited for. One
  // deadline for all of them, so a read never waits more than one hedge in all.
  std::vector<bool> own(count, false);
  uint64_t deadline_ns = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!flights[i]) continue;
    const bool tentative = flights[i]->tentative();
    uint64_t wait_ns = UINT64_MAX;
    if (tentative) {
      const uint64_t now = cache_.env().NowNanos();
      if (deadline_ns == 0) deadline_ns = now + (ra ? ra->HedgeNs() : ReadAhead::kMinHedgeNs);
      wait_ns = deadline_ns > now ? deadline_ns - now : 0;
    }
    std::optional<Result<cache::BlockCache::Ptr>> r =
        co_await cache_.Await(std::move(flights[i]), wait_ns);
    if (r && r->ok()) {
      got[i] = std::static_pointer_cast<const ChunkEntry>(**r);
    } else if (r && !tentative) {
      co_return r->status();
    } else {
      own[i] = true;
    }
  }
  for (size_t i = 0; i < count;) {
    if (!own[i]) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < count && own[j]) ++j;
    CO_ASSIGN_OR_RETURN(auto chunks, co_await FetchChunks(store_, id, footer, c0 + i, j - i, true));
    for (size_t k = i; k < j; ++k) {
      auto e = std::make_shared<const ChunkEntry>(std::move(chunks[k - i]), nullptr);
      cache_.Insert(ChunkKey(id, c0 + k), e, Charge(*e));  // the read-ahead may still finish
      got[k] = std::move(e);
    }
    i = j;
  }
  for (size_t i = 0; i < count; ++i) {
    if (direct[i]) continue;
    const uint64_t chunk_first = (c0 + i) * per_chunk;
    const uint64_t from = std::max(index, chunk_first);
    const uint64_t to = std::min(index + n, chunk_first + footer.chunks[c0 + i].raw_blocks);
    got[i]->NoteRead();
    std::memcpy(dest + (from - index) * bs, got[i]->bytes.data() + (from - chunk_first) * bs,
                (to - from) * bs);
  }
  co_return Status::Ok();
}

Task<std::vector<bool>> SegmentReader::ReadFromDisk(uint64_t id, const SegmentFooter& footer,
                                                    uint64_t index, uint64_t n, uint8_t* dest) {
  const uint64_t bs = footer.block_size;
  const uint64_t per_chunk = footer.blocks_per_chunk;
  const size_t c0 = footer.chunk_of(index);
  const size_t count = footer.chunk_of(index + n - 1) + 1 - c0;
  std::vector<bool> out(count, false);
  cache::DiskCache* disk = options_.disk_cache;
  if (!disk || !disk->enabled()) co_return out;
  std::vector<cache::DiskCache::ReadItem> items;
  std::vector<size_t> which;  // items[k] is chunk c0 + which[k]
  for (size_t i = 0; i < count; ++i) {
    const ChunkInfo& chunk = footer.chunks[c0 + i];
    const uint64_t first = (c0 + i) * per_chunk;
    if (first < index || first + chunk.raw_blocks > index + n) continue;  // covered in part
    if (cache_.Contains(ChunkKey(id, c0 + i))) continue;  // in memory: cheaper still
    std::string key = DiskKey(footer, c0 + i);
    if (key.empty()) break;          // not yet scoped
    if (!disk->Contains(key)) continue;  // not on disk: fetched below, as one GET
    items.push_back({std::move(key), chunk.checksum, chunk.raw_blocks * bs,
                     dest + (first - index) * bs});
    which.push_back(i);
  }
  if (items.empty()) co_return out;
  std::vector<bool> hit = co_await disk->ReadMany(std::move(items));
  for (size_t k = 0; k < which.size(); ++k) out[which[k]] = hit[k];
  co_return out;
}

Task<Result<std::vector<std::string>>> SegmentReader::FetchChunks(objstore::ObjectStore& store,
                                                                  uint64_t id,
                                                                  const SegmentFooter& footer,
                                                                  size_t first, size_t n,
                                                                  bool refetch_corrupt) {
  const std::string key = SegmentKey(id);
  // The disk cache first (every hit verified against the footer's checksum): only the
  // span from the first to the last chunk it lacks is fetched, still one GET.
  // All of the run's entries are read in one job on the blocking pool (GetMany).
  std::vector<std::string> disk_keys(n);  // empty: no disk cache
  std::vector<std::optional<std::string>> kept(n);
  std::vector<cache::DiskCache::GetItem> lookups;
  for (size_t i = 0; i < n; ++i) {
    const ChunkInfo& chunk = footer.chunks[first + i];
    disk_keys[i] = DiskKey(footer, first + i);
    if (disk_keys[i].empty()) break;  // no disk cache (or not yet scoped)
    lookups.push_back({disk_keys[i], chunk.checksum, chunk.raw_blocks * footer.block_size});
  }
  if (!lookups.empty()) {
    std::vector<std::optional<std::string>> got =
        co_await options_.disk_cache->GetMany(std::move(lookups));
    for (size_t i = 0; i < got.size(); ++i) kept[i] = std::move(got[i]);
  }
  size_t lo = n, hi = 0;  // the chunks to fetch: [first + lo, first + hi)
  for (size_t i = 0; i < n; ++i) {
    if (!kept[i]) lo = std::min(lo, i), hi = i + 1;
  }
  std::vector<std::string> out;
  if (lo == n) {  // every chunk from the disk cache
    for (auto& k : kept) out.push_back(std::move(*k));
    co_return out;
  }
  const uint64_t begin = footer.chunks[first + lo].offset;
  const ChunkInfo& last = footer.chunks[first + hi - 1];
  const uint64_t length = last.offset + last.stored_len - begin;  // chunks are contiguous
  auto fetch = [&]() -> Task<Status> {
    out.clear();
    CO_ASSIGN_OR_RETURN(std::string stored,
                        co_await store.Get(key, objstore::GetRange{begin, length}));
    if (stored.size() != length) co_return Status::Corruption("short read of " + key);
    for (size_t c = first + lo; c < first + hi; ++c) {
      const ChunkInfo& chunk = footer.chunks[c];
      CO_ASSIGN_OR_RETURN(
          std::string raw,
          DecodeChunk(std::string_view(stored).substr(chunk.offset - begin, chunk.stored_len),
                      chunk, footer.block_size, fmt::format("{} (chunk {})", key, c),
                      footer.key.get()));
      out.push_back(std::move(raw));
    }
    // The GET's body (pooled by an S3 store when large: util/buffer_pool.h) is decoded
    // into the chunks; its memory serves the next large GET.
    if (options_.buffer_pool) options_.buffer_pool->Give(std::move(stored));
    co_return Status::Ok();
  };
  if (refetch_corrupt) {
    CO_RETURN_IF_ERROR(co_await objstore::RefetchCorrupt(fetch, corrupt_refetches_));
  } else {
    CO_RETURN_IF_ERROR(co_await fetch());
  }
  std::vector<std::string> all;  // verified bytes only reach the disk cache
  for (size_t i = 0; i < n; ++i) {
    if (i < lo || i >= hi) {
      all.push_back(std::move(*kept[i]));
      continue;
    }
    std::string& raw = out[i - lo];  // fetched (a kept chunk between two lacking ones too)
    if (!kept[i] && !disk_keys[i].empty()) {
      options_.disk_cache->Put(disk_keys[i], footer.chunks[first + i].checksum, raw);
    }
    all.push_back(std::move(raw));
  }
  co_return all;
}

Task<bool> SegmentReader::Prefetch(objstore::ObjectStore& once, ReadAhead& ra, uint64_t id,
                                   uint64_t index, uint64_t n) {
  if (options_.read_partial_raw_chunks || n == 0) co_return true;
  auto footer = co_await Chunks(id);
  if (!footer.ok()) {
    ra.counters().failed.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  const SegmentFooter& f = **footer;
  if (index >= f.data_blocks) co_return true;
  n = std::min(n, f.data_blocks - index);
  size_t c0 = f.chunk_of(index), c1 = f.chunk_of(index + n - 1) + 1;
  if (f.data_blocks * f.block_size <= kWholeSegmentBytes) {
    // A small segment (a FLUSH's worth of scattered writes) is read ahead whole: a
    // sequential reader meets its other blocks further on, and one GET of all its chunks
    // costs about what a GET of one does (latency, not bytes).
    c0 = 0;
    c1 = f.chunks.size();
  }
  // Chunks on local disk at either end are left out: a read takes them from there
  // (ReadFromDisk) about as fast as from memory, so reading them ahead would only cost a
  // copy. Those between chunks to fetch stay in: one GET spans them (FetchChunks), where
  // skipping them would cut it into several.
  if (options_.disk_cache) {
    auto on_disk = [&](size_t c) { return options_.disk_cache->Contains(DiskKey(f, c)); };
    while (c0 < c1 && on_disk(c0)) ++c0;
    while (c1 > c0 && on_disk(c1 - 1)) --c1;
  }
  const uint64_t max_get = std::max<uint64_t>(1, ra.options().max_get_bytes);
  std::vector<Task<bool>> gets;
  bool over_budget = false;
  // Claims runs of adjacent chunks nobody has or fetches, each run at most max_get bytes
  // and within the budget, taken before a chunk is claimed (a claim is a promise to fetch).
  for (size_t c = c0; c < c1 && !over_budget;) {
    const size_t first = c;
    uint64_t bytes = 0;
    bool skip = false;  // the chunk at c is cached or on its way
    while (c < c1) {
      const uint64_t raw = f.chunks[c].raw_blocks * f.block_size;
      if (bytes > 0 && bytes + raw > max_get) break;
      if (!ra.Reserve(raw)) {
        over_budget = true;
        break;
      }
      if (!cache_.Claim(ChunkKey(id, c), /*tentative=*/true).lead) {
        ra.Release(raw);
        skip = true;
        break;
      }
      bytes += raw;
      ++c;
    }
    if (c > first) gets.push_back(PrefetchRun(once, ra, id, *footer, first, c - first, bytes));
    if (skip) ++c;
  }
  if (over_budget) ra.counters().over_budget.fetch_add(1, std::memory_order_relaxed);
  std::vector<bool> done = co_await WhenAll(std::move(gets));
  co_return std::find(done.begin(), done.end(), false) == done.end();
}

Task<bool> SegmentReader::PrefetchRun(objstore::ObjectStore& once, ReadAhead& ra, uint64_t id,
                                      std::shared_ptr<const SegmentFooter> footer, size_t first,
                                      size_t n, uint64_t reserved) {
  const uint64_t start_ns = ra.env().NowNanos();
  auto fetched = co_await FetchChunks(once, id, *footer, first, n, /*refetch_corrupt=*/false);
  ReadAheadCounters& counters = ra.counters();
  if (fetched.ok()) {
    ra.NoteGetNanos(ra.env().NowNanos() - start_ns);
    counters.gets.fetch_add(1, std::memory_order_relaxed);
    const ChunkInfo& last = footer->chunks[first + n - 1];
    counters.bytes.fetch_add(last.offset + last.stored_len - footer->chunks[first].offset,
                             std::memory_order_relaxed);
  } else {
    counters.failed.fetch_add(1, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string ck = ChunkKey(id, first + i);
    if (!fetched.ok()) {
      // Its waiters (tentative flight) fetch the chunk themselves.
      cache_.Finish(ck, fetched.status(), 0);
      continue;
    }
    auto e = std::make_shared<const ChunkEntry>(std::move((*fetched)[i]), ra.shared_counters());
    const uint64_t charge = Charge(*e);
    cache_.Finish(ck, std::shared_ptr<const cache::CacheEntry>(std::move(e)), charge);
  }
  ra.Release(reserved);
  co_return fetched.ok();
}

}  // namespace portal::volume
