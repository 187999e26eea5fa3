// Segment objects (seg/<id>.seg): encode and decode. The byte layout is documented at
// the top of segment_format.cc and in docs/volume.md.
//
// Every decode checks magic, checksums, lengths and ordering and returns Corruption
// naming the object on any mismatch; nothing here asserts on stored bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/aead.h"
#include "lsm/extent.h"
#include "objstore/rope.h"
#include "util/status.h"

namespace portal {
class BufferPool;
}

namespace portal::volume {

enum class ChunkCodec : uint8_t { kRaw = 0, kLz4 = 1 };  // stored: never renumber

struct ChunkInfo {
  uint64_t offset = 0;      // in the object
  uint64_t stored_len = 0;  // bytes in the object
  uint64_t raw_blocks = 0;  // blocks it decodes to
  ChunkCodec codec = ChunkCodec::kRaw;
  uint64_t checksum = 0;  // XXH3-64 of the decoded bytes
};

struct SegmentExtent {
  lsm::Extent extent;
  // GC relocation: apply only where the map still points at `expected` (sliced along
  // the run); a user write or TRIM in between always wins.
  bool conditional = false;
  lsm::Loc expected;
  friend bool operator==(const SegmentExtent&, const SegmentExtent&) = default;
};

struct SegmentFooter {
  uint64_t segment_id = 0;
  uint64_t epoch = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint32_t block_size = 4096;
  uint32_t blocks_per_chunk = 16;
  uint64_t data_blocks = 0;
  std::vector<ChunkInfo> chunks;
  std::vector<SegmentExtent> extents;  // sorted by first, non-overlapping
  // The writer's settled prefix when this segment's upload first started: every id up
  // to it was stored before this object was (DESIGN.md, single writer, step 7: a gap at
  // or below it is damage, not a crash). Version-1 footers did not carry it; they
  // decode as segment_id - 1, exact for writers with one upload in flight (with K in
  // flight it is a lower bound: the settled prefix at the first attempt, never changed).
  uint64_t durable_through = 0;
  // Fences only: the first id the fencing writer uploads itself. The ids between the
  // fence and `resume` are the window an older writer may still land in; replay skips
  // them (DESIGN.md single writer, step 5). Stored only when above segment_id + 1;
  // absent it reads as segment_id + 1 (every fence written before windows existed).
  uint64_t resume = 0;
  // Encrypted segments only (not stored: made from the footer's header when decoded, or
  // the encoder's key): the object's key, which opens its chunks. Null: not encrypted.
  std::shared_ptr<const crypto::ObjectKey> key;

  // A fence segment carries no data and no extents (see docs/volume.md).
  bool is_fence() const { return data_blocks == 0 && extents.empty(); }
  // Chunk holding data-stream block `index`, and the block's position inside it.
  size_t chunk_of(uint64_t index) const { return index / blocks_per_chunk; }
};

constexpr size_t kSegmentTrailerSize = 20;
// Bound on a fence's resume - segment_id when decoding (Manifest's kMaxUploadWindow + 1).
constexpr uint64_t kMaxFenceWindow = 1025;
// Version 2 appends durable_through, then on a fence whose resume is above id + 1, resume;
// version 1 footers still decode.
constexpr uint32_t kSegmentFormatVersion = 2;

// A segment's data area as its producer hands it over: a user write buffer
// (WriteBuffer::Contents), a GC relocation, nothing (a fence).
struct SegmentContents {
  // footer.data_blocks blocks in stream order, in pieces their owners keep alive, or one
  // string (objstore::Rope(std::string)).
  objstore::Rope data;
  // Checksum64 of chunk i of `data` where the producer knows it already (a WriteBuffer
  // hashes large writes as they arrive); unset or past the end: computed here.
  std::vector<std::optional<uint64_t>> chunk_sums;
};

struct EncodeOptions {
  bool compress = false;  // LZ4 per chunk, kept only where it saves at least 1/8
  // Where a string the encoder builds comes from (null: allocated).
  BufferPool* pool = nullptr;
  // The least capacity of a string the encoder builds (the uploader's: a full segment's,
  // EncodedCapacity(l0_sst_size_bytes)). Segments sealed by the flush interval or a FLUSH
  // vary in size; asking for one size every time lets the string a store gave back after
  // its PUT serve the next segment whatever its size (the pool serves only near fits),
  // and the pages a smaller segment does not fill are never touched.
  size_t min_capacity = 0;
};

// Room for a compressed or sealed segment of `data_bytes` with its footer: LZ4 is kept
// only where it is smaller, a sealed chunk adds a 16-byte tag per chunk, and the footer
// takes at most ~15 bytes per block (one extent per 4 KiB block in a random write).
inline size_t EncodedCapacity(uint64_t data_bytes) {
  return static_cast<size_t>(data_bytes + data_bytes / 256 + (64 << 10));
}

struct EncodedSegment {
  // The object. Raw: the data's own pieces plus one for the footer (no copy), or, when the
  // data is one string, that string with the footer appended. Compressed: one string.
  objstore::Rope bytes;
  uint64_t footer_checksum = 0;  // identifies this exact object (lost-ack read-back)
};

// The one segment encoder: every segment object is built here. `footer` supplies ids,
// sequence range, sizes and extents (chunks are filled in); data extents must reference
// stream indexes < data_blocks. The same footer and data always give the same bytes,
// whatever pieces the data comes in.
//
// `key`: encrypt (docs/volume.md "Encryption"): every chunk and the footer sealed under
// this object's key (crypto::Keyring::NewObjectKey(kSegment)), drawn once per segment so
// a re-encode on a retry gives the same bytes. Null: the unencrypted format, unchanged.
EncodedSegment EncodeSegment(SegmentFooter* footer, SegmentContents contents,
                             const EncodeOptions& options,
                             std::shared_ptr<const crypto::ObjectKey> key = nullptr);

// Parses the fixed trailer (the object's last kSegmentTrailerSize bytes): returns the
// footer length; the footer (sealed, when encrypted) is the `footer_len` bytes before the
// trailer.
Result<uint32_t> ParseSegmentTrailer(std::string_view trailer, const std::string& name);

// Decodes a footer given the object's tail (at least trailer + footer bytes; more in
// front is fine). Validates everything against `object_size`. An encrypted segment needs
// `keyring` (InvalidArgument naming the key id without it, or under a key it lacks); with a
// keyring, an unencrypted segment is Corruption (volumes are encrypted whole).
Result<SegmentFooter> DecodeSegmentFooter(std::string_view tail, uint64_t object_size,
                                          const std::string& name,
                                          uint64_t* footer_checksum = nullptr,
                                          const crypto::Keyring* keyring = nullptr);

// Decodes one chunk's stored bytes into raw blocks, verifying its checksum. `key`: the
// footer's key (null for an unencrypted segment).
Result<std::string> DecodeChunk(std::string_view stored, const ChunkInfo& chunk,
                                uint32_t block_size, const std::string& name,
                                const crypto::ObjectKey* key = nullptr);

}  // namespace portal::volume
