// SegmentReader: reads block data out of segment objects. Footers (chunk tables) and
// decoded chunks go through the block cache; on memory:// raw chunks are read block by
// block instead (read_partial_raw_chunks), since the bytes are already in this process.
// Bytes that fail verification are fetched again (objstore::RefetchCorrupt) before a read
// fails with Corruption naming the segment; only verified bytes reach a cache.
// With a disk cache (VolumeOptions::disk_cache) a chunk is looked up there right before
// its GET and kept there right after it; settled segments' chunks are kept there too
// (KeepWritten). Disk entries are keyed by store, volume, segment id, chunk, epoch and
// the footer's checksum of the chunk, and verified against that checksum on every hit.
//
// Chunk GETs: adjacent chunks one read (or one read-ahead) needs become one ranged GET,
// split into chunks each verified by its own checksum (FetchChunks, the one place chunk
// bytes come from the store). No chunk is fetched twice at once: every chunk is claimed in
// the block cache first (LruCache::Claim), and a chunk another read or a read-ahead is
// fetching is awaited. A read-ahead GET is tried once; a client read waiting for one that
// failed, or that takes longer than ReadAhead::HedgeNs(), fetches the chunk itself.
//
// Thread-safe. The store, cache and `corrupt_refetches` counter must outlive it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache/block_cache.h"
#include "cache/persistent_cache.h"
#include "objstore/object_store.h"
#include "volume/options.h"
#include "volume/read_ahead.h"
#include "volume/segment_format.h"

namespace portal::volume {

class SegmentReader {
 public:
  SegmentReader(objstore::ObjectStore& store, cache::BlockCache& cache,
                const VolumeOptions& options, cache::PersistentCache* footers = nullptr,
                std::atomic<uint64_t>* corrupt_refetches = nullptr)
      : store_(store),
        cache_(cache),
        options_(options),
        footers_(footers),
        corrupt_refetches_(corrupt_refetches),
        cache_scope_(options.block_cache ? store.url() + "|" : "") {}

  // The whole footer, uncached (replay, GC relocation). `size` 0: unknown (HEAD first).
  Task<Result<SegmentFooter>> ReadFooter(uint64_t id, uint64_t size,
                                         uint64_t* footer_checksum = nullptr);
  // The footer's chunk table, cached.
  Task<Result<std::shared_ptr<const SegmentFooter>>> Chunks(uint64_t id);
  // Makes a just-written or just-read footer available without a GET.
  void Remember(uint64_t id, uint64_t size, const SegmentFooter& footer);
  void NoteSize(uint64_t id, uint64_t size);
  // The object's size if known (0 otherwise).
  uint64_t KnownSize(uint64_t id);
  void Forget(uint64_t id);
  // A segment this writer stored (its PUT succeeded), whose bytes are `object`: its footer
  // goes to the persistent footer cache, as ReadFooter would keep it, so that reading it
  // after a restart costs neither a HEAD nor a footer GET. The tail is copied out before
  // the PUT takes the bytes (FooterEntry), kept once the PUT succeeded (KeepFooter).
  std::string FooterEntry(const objstore::Rope& object) const;
  void KeepFooter(uint64_t id, std::string entry);

  // Reads `n` blocks of segment `id`'s data stream from `index` into `dest`. `ra`: the
  // volume's read-ahead (counts hits, bounds the wait for its GETs); may be null.
  Task<Status> ReadBlocks(uint64_t id, uint64_t index, uint64_t n, uint8_t* dest,
                          ReadAhead* ra = nullptr);

  // Read-ahead: loads the chunks holding blocks [index, index + n) of segment `id` into
  // the block cache, in GETs of at most ra.options().max_get_bytes that run concurrently,
  // each tried once on `once` (a store without a retry layer) and each within ra's
  // in-flight budget (what does not fit is skipped). Chunks cached or being fetched are
  // skipped. Never fails: a failure is counted (ra.counters()) and dropped; the result says
  // whether there was none. memory:// (read_partial_raw_chunks) has nothing to read ahead.
  // A segment whose data is at most kWholeSegmentBytes is read ahead whole.
  Task<bool> Prefetch(objstore::ObjectStore& once, ReadAhead& ra, uint64_t id, uint64_t index,
                      uint64_t n);
  static constexpr uint64_t kWholeSegmentBytes = 1 << 20;

  // What the disk cache's keys start with: the store's URL and the volume's uuid (set at
  // open once the uuid is known; until then the disk cache is not used).
  void SetDiskCacheScope(const std::string& store_url, const std::string& volume_uuid);
  // A settled segment (its PUT confirmed): its chunks go to the disk cache, so that data
  // just written never costs a GET. `data` makes the segment's data stream; it runs on
  // the blocking pool, later, and must keep what it reads alive itself.
  void KeepWritten(const SegmentFooter& footer, std::function<objstore::Rope()> data);

 private:
  std::string DiskKey(const SegmentFooter& footer, size_t chunk);
  // The one place a chunk's verified bytes come from the store: one ranged GET of chunks
  // [first, first + n) of segment `id` (whose chunk table is `footer`), split into the
  // chunks' decoded bytes, each verified by its own checksum. `refetch_corrupt`: bytes
  // that fail verification are fetched again (RefetchCorrupt) before Corruption; a
  // read-ahead passes false (it never retries). The disk cache is looked up first (only
  // the span of chunks it lacks is fetched) and filled with verified fetched chunks.
  Task<Result<std::vector<std::string>>> FetchChunks(objstore::ObjectStore& store, uint64_t id,
                                                     const SegmentFooter& footer, size_t first,
                                                     size_t n, bool refetch_corrupt);
  // For each chunk of blocks [index, index + n) of segment `id`: whether it was read
  // from the disk cache straight into its place in `dest` (chunks the range covers whole,
  // not in the block cache, present on disk and verified there).
  Task<std::vector<bool>> ReadFromDisk(uint64_t id, const SegmentFooter& footer, uint64_t index,
                                       uint64_t n, uint8_t* dest);
  // One read-ahead GET of chunks [first, first + n), claimed by the caller (it finishes
  // them); `reserved` bytes of ra's budget are released at the end.
  Task<bool> PrefetchRun(objstore::ObjectStore& once, ReadAhead& ra, uint64_t id,
                         std::shared_ptr<const SegmentFooter> footer, size_t first, size_t n,
                         uint64_t reserved);
  // Blocks [index, index + n) through the block cache's chunks.
  Task<Status> ReadCached(uint64_t id, const SegmentFooter& footer, uint64_t index, uint64_t n,
                          uint8_t* dest, ReadAhead* ra);

  objstore::ObjectStore& store_;
  cache::BlockCache& cache_;
  const VolumeOptions& options_;
  cache::PersistentCache* footers_;  // may be null
  std::atomic<uint64_t>* corrupt_refetches_;  // may be null; see RefetchCorrupt
  // Block cache keys: "<scope>c/<segment>/<chunk>" and "<scope>sf/<segment>"; the scope
  // keeps volumes apart in a cache they share (VolumeOptions::block_cache), else "".
  const std::string cache_scope_;
  std::string ChunkKey(uint64_t id, size_t chunk) const {
    return cache_scope_ + "c/" + std::to_string(id) + "/" + std::to_string(chunk);
  }
  std::string FooterKey(uint64_t id) const { return cache_scope_ + "sf/" + std::to_string(id); }
  std::mutex mu_;
  std::unordered_map<uint64_t, uint64_t> sizes_;  // GUARDED_BY(mu_)
  std::string disk_scope_;                        // GUARDED_BY(mu_); "": no disk cache
};

}  // namespace portal::volume
