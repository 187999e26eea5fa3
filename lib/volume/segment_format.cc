// Segment object layout (little-endian; varints are LEB128):
//
//   +--------------------------------------------------------------------+
//   | chunk 0 | chunk 1 | ... | chunk n-1 |  data area: 16-block chunks,   |
//   |                                      |  each LZ4 or raw              |
//   +--------------------------------------------------------------------+
//   | footer                                                             |
//   |   format_version, segment_id, epoch, first_seq, last_seq,          |
//   |   block_size, blocks_per_chunk, data_blocks       (varints)        |
//   |   chunk_count; per chunk: offset, stored_len, raw_blocks (varints),|
//   |     codec u8, xxh3 u64 of the decoded bytes                        |
//   |   extent_count; per extent: first - previous end, length (varints),|
//   |     kind u8 (1 data, 2 zero, 3 hole; | 0x80 if conditional),       |
//   |     data: index varint; conditional: expected kind u8,            |
//   |     [expected segment, expected index varints if data]            |
//   |   durable_through varint                      (format version >= 2) |
//   |   resume varint       (version 2, fences only, when above id + 1)   |
//   +--------------------------------------------------------------------+
//   | trailer: footer_len u32 | xxh3(footer) u64 | magic u64 "PBDSEG01" |
//   +--------------------------------------------------------------------+
//
// Encrypted segments (EncodeOptions::key; crypto/aead.cc has the sealing and the nonce
// argument) keep this layout with three changes: each chunk's stored bytes (LZ4 or raw,
// as above) are sealed at the slot of their offset, so stored_len counts a 16-byte tag
// and every chunk still decrypts alone from a ranged GET; the footer is replaced by
// crypto header (56 bytes) | sealed footer; the trailer's checksum covers those bytes and
// its magic is "PBDSEGE1". Unencrypted segments are unchanged, byte for byte.
#include "volume/segment_format.h"

#include <fmt/format.h>
#include <lz4.h>

#include <algorithm>

#include "util/buffer_pool.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace portal::volume {
namespace {

constexpr uint64_t kMagic = 0x3130474553444250ULL;  // "PBDSEG01" little-endian
constexpr uint64_t kSealedMagic = 0x3145474553444250ULL;  // "PBDSEGE1"
constexpr uint8_t kConditionalBit = 0x80;

Status Bad(const std::string& name, const std::string& what) {
  return Status::Corruption(fmt::format("segment {}: {}", name, what));
}

void PutLoc(std::string* out, const lsm::Loc& loc) {
  if (loc.is_data()) {
    PutVarint64(out, loc.segment);
    PutVarint64(out, loc.index);
  }
}

bool ValidKind(uint8_t k) { return k >= 1 && k <= 3; }

}  // namespace

// Appends the footer and trailer of `f` (its chunks filled in) to `s`; returns the
// footer's checksum.
// Encrypted when `key` is set.
static uint64_t AppendFooter(const SegmentFooter* f, std::string* s,
                             const crypto::ObjectKey* key = nullptr);

// Calls fn(index, len, bytes, owner) for each chunk of `data` (chunk_bytes each, the last
// one maybe shorter), in order. `bytes` points into the piece holding the chunk (`owner`
// is that piece's), or into a scratch copy where the chunk spans pieces (`owner` null); it
// is empty where skip(index) says the bytes are not needed (fn still learns the chunk's
// length from `len`).
template <typename Skip, typename Fn>
static void ForEachChunk(const objstore::Rope& data, uint64_t chunk_bytes, Skip&& skip, Fn&& fn) {
  const auto& pieces = data.pieces();
  std::string scratch;
  size_t i = 0;
  uint64_t piece_start = 0;
  for (uint64_t pos = 0, index = 0; pos < data.size(); pos += chunk_bytes, ++index) {
    const uint64_t len = std::min(chunk_bytes, data.size() - pos);
    if (skip(index)) {
      fn(index, len, std::string_view(), nullptr);
      continue;
    }
    while (piece_start + pieces[i].bytes.size() <= pos) piece_start += pieces[i++].bytes.size();
    if (pos + len <= piece_start + pieces[i].bytes.size()) {
      fn(index, len, pieces[i].bytes.substr(pos - piece_start, len), &pieces[i].owner);
      continue;
    }
    scratch.clear();
    uint64_t at = pos - piece_start;
    for (size_t j = i; scratch.size() < len; ++j, at = 0) {
      scratch.append(pieces[j].bytes.substr(at, len - scratch.size()));
    }
    fn(index, len, std::string_view(scratch), nullptr);
  }
}

// A string taken from `pool` as a rope piece's owner: given back to the pool when the
// last rope referencing it goes (after the store's PUT).
static std::shared_ptr<const std::string> PooledOwner(std::string s, BufferPool* pool) {
  auto give_back = [pool](const std::string* p) {
    if (pool) pool->Give(std::move(*const_cast<std::string*>(p)));
    delete p;
  };
  return std::shared_ptr<const std::string>(new std::string(std::move(s)), give_back);
}

EncodedSegment EncodeSegment(SegmentFooter* f, SegmentContents contents,
                             const EncodeOptions& options,
                             std::shared_ptr<const crypto::ObjectKey> object_key) {
  objstore::Rope& data = contents.data;
  PORTAL_ASSERT(data.size() == f->data_blocks * f->block_size, "data size mismatch");
  const uint64_t chunk_bytes = uint64_t{f->blocks_per_chunk} * f->block_size;
  auto known = [&](uint64_t index) {
    return index < contents.chunk_sums.size() && contents.chunk_sums[index].has_value();
  };
  f->chunks.clear();
  f->chunks.reserve((data.size() + chunk_bytes - 1) / chunk_bytes);
  EncodedSegment out;

  const crypto::ObjectKey* key = object_key.get();
  f->key = std::move(object_key);
  if (options.compress || key) {
    // A new string: chunks compressed (where it pays) and sealed (when encrypting), and the
    // footer. Unencrypted chunks that LZ4 does not shrink are not copied: the object
    // references them where they lie in the data's pieces (`parts`), as a raw segment
    // does; incompressible data then costs no copy and no fresh pages here.
    std::string s =
        TakeFrom(options.pool, std::max(EncodedCapacity(data.size()), options.min_capacity));
    struct Part {
      const std::shared_ptr<const void>* owner;  // a data piece's: `bytes`; null: s[at, +len)
      std::string_view bytes;
      uint64_t at = 0;
      uint64_t len = 0;
    };
    std::vector<Part> parts;
    uint64_t object_size = 0;
    auto from_s = [&](uint64_t at) {
      const uint64_t len = s.size() - at;
      if (len == 0) return;
      if (!parts.empty() && !parts.back().owner) {
        parts.back().len += len;
      } else {
        parts.push_back(Part{nullptr, {}, at, len});
      }
      object_size += len;
    };
    std::string packed;
    ForEachChunk(data, chunk_bytes, [](uint64_t) { return false; },
                 [&](uint64_t index, uint64_t, std::string_view raw,
                     const std::shared_ptr<const void>* owner) {
      ChunkInfo c;
      c.offset = object_size;
      c.raw_blocks = raw.size() / f->block_size;
      c.checksum = known(index) ? *contents.chunk_sums[index] : Checksum64(raw);
      c.codec = ChunkCodec::kRaw;
      packed.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
      int n = options.compress ? LZ4_compress_default(raw.data(), packed.data(),
                                                      static_cast<int>(raw.size()),
                                                      static_cast<int>(packed.size()))
                               : 0;
      std::string_view piece = raw;
      if (n > 0 && static_cast<size_t>(n) <= raw.size() - raw.size() / 8) {
        c.codec = ChunkCodec::kLz4;
        piece = std::string_view(packed.data(), static_cast<size_t>(n));
      }
      const uint64_t at = s.size();
      if (key) {
        key->Seal(c.offset, piece, &s);
      } else if (c.codec == ChunkCodec::kRaw && owner) {
        parts.push_back(Part{owner, raw, 0, raw.size()});
        object_size += raw.size();
      } else {
        s.append(piece);
      }
      from_s(at);
      c.stored_len = object_size - c.offset;
      f->chunks.push_back(c);
    });
    const uint64_t footer_at = s.size();
    out.footer_checksum = AppendFooter(f, &s, key);
    from_s(footer_at);
    if (parts.size() == 1) {
      // All of it in `s` (compressed or sealed chunks, or none): one string, as it was built.
      out.bytes = objstore::Rope(std::move(s));
      return out;
    }
    std::shared_ptr<const std::string> whole = PooledOwner(std::move(s), options.pool);
    for (const Part& p : parts) {
      if (p.owner) {
        out.bytes.Append(*p.owner, p.bytes);
      } else {
        out.bytes.Append(whole, std::string_view(*whole).substr(p.at, p.len));
      }
    }
    return out;
  }

  // Raw chunks are the data itself: only their checksums are computed (where not known).
  ForEachChunk(data, chunk_bytes, known, [&](uint64_t index, uint64_t len, std::string_view raw,
                                             const std::shared_ptr<const void>*) {
    ChunkInfo c;
    c.offset = index * chunk_bytes;
    c.stored_len = len;
    c.raw_blocks = len / f->block_size;
    c.checksum = known(index) ? *contents.chunk_sums[index] : Checksum64(raw);
    c.codec = ChunkCodec::kRaw;
    f->chunks.push_back(c);
  });
  if (data.empty() || data.is_one_string()) {
    // One string (a fence, a relocation): the footer goes at its end.
    std::string s = std::move(data).Flatten(options.pool);
    out.footer_checksum = AppendFooter(f, &s);
    out.bytes = objstore::Rope(std::move(s));
  } else {
    // Pieces (a write buffer's memory): referenced, not copied; the footer is one more.
    auto tail = std::make_shared<std::string>();
    out.footer_checksum = AppendFooter(f, tail.get());
    out.bytes = std::move(data);
    out.bytes.Append(std::move(tail));
  }
  return out;
}

static uint64_t AppendFooter(const SegmentFooter* f, std::string* out,
                             const crypto::ObjectKey* key) {
  std::string& s = *out;
  std::string footer;
  PutVarint64(&footer, kSegmentFormatVersion);
  PutVarint64(&footer, f->segment_id);
  PutVarint64(&footer, f->epoch);
  PutVarint64(&footer, f->first_seq);
  PutVarint64(&footer, f->last_seq);
  PutVarint64(&footer, f->block_size);
  PutVarint64(&footer, f->blocks_per_chunk);
  PutVarint64(&footer, f->data_blocks);
  PutVarint64(&footer, f->chunks.size());
  for (const ChunkInfo& c : f->chunks) {
    PutVarint64(&footer, c.offset);
    PutVarint64(&footer, c.stored_len);
    PutVarint64(&footer, c.raw_blocks);
    footer.push_back(static_cast<char>(c.codec));
    PutFixed64(&footer, c.checksum);
  }
  PutVarint64(&footer, f->extents.size());
  uint64_t prev_end = 0;
  for (const SegmentExtent& se : f->extents) {
    const lsm::Extent& e = se.extent;
    PORTAL_ASSERT(e.first >= prev_end && e.end > e.first, "segment extents out of order");
    PutVarint64(&footer, e.first - prev_end);
    PutVarint64(&footer, e.length());
    footer.push_back(static_cast<char>(static_cast<uint8_t>(e.loc.kind) |
                                       (se.conditional ? kConditionalBit : 0)));
    if (e.loc.is_data()) {
      PORTAL_ASSERT(e.loc.segment == f->segment_id && e.loc.index + e.length() <= f->data_blocks,
                    "data extent outside the segment's stream");
      PutVarint64(&footer, e.loc.index);
    }
    if (se.conditional) {
      footer.push_back(static_cast<char>(se.expected.kind));
      PutLoc(&footer, se.expected);
    }
    prev_end = e.end;
  }
  PutVarint64(&footer, f->durable_through);
  if (f->is_fence() && f->resume > f->segment_id + 1) PutVarint64(&footer, f->resume);
  if (key) {
    std::string sealed = key->header();
    key->Seal(crypto::kWholeObject, footer, &sealed);
    footer = std::move(sealed);
  }
  const uint64_t checksum = Checksum64(footer);
  s.append(footer);
  PutFixed32(&s, static_cast<uint32_t>(footer.size()));
  PutFixed64(&s, checksum);
  PutFixed64(&s, key ? kSealedMagic : kMagic);
  return checksum;
}

Result<uint32_t> ParseSegmentTrailer(std::string_view trailer, const std::string& name) {
  if (trailer.size() < kSegmentTrailerSize) return Bad(name, "object shorter than its trailer");
  trailer = trailer.substr(trailer.size() - kSegmentTrailerSize);
  const auto* p = reinterpret_cast<const uint8_t*>(trailer.data());
  const uint64_t magic = LoadLE64(p + 12);
  if (magic != kMagic && magic != kSealedMagic) return Bad(name, "bad magic (not a segment)");
  return LoadLE32(p);
}

Result<SegmentFooter> DecodeSegmentFooter(std::string_view tail, uint64_t object_size,
                                          const std::string& name, uint64_t* footer_checksum,
                                          const crypto::Keyring* keyring) {
  ASSIGN_OR_RETURN(uint32_t footer_len, ParseSegmentTrailer(tail, name));
  if (tail.size() < kSegmentTrailerSize + footer_len ||
      object_size < kSegmentTrailerSize + footer_len) {
    return Bad(name, "footer length exceeds the object");
  }
  const auto* tp = reinterpret_cast<const uint8_t*>(tail.data() + tail.size() - kSegmentTrailerSize);
  std::string_view footer =
      tail.substr(tail.size() - kSegmentTrailerSize - footer_len, footer_len);
  uint64_t sum = Checksum64(footer);
  if (sum != LoadLE64(tp + 4)) return Bad(name, "footer checksum mismatch");
  if (footer_checksum) *footer_checksum = sum;
  const uint64_t data_area = object_size - kSegmentTrailerSize - footer_len;

  SegmentFooter f;
  const bool sealed = LoadLE64(tp + 12) == kSealedMagic;
  std::string opened;  // the decrypted footer
  if (sealed) {
    if (!keyring) return crypto::NoKeyError(footer, "segment " + name);
    ASSIGN_OR_RETURN(f.key, keyring->KeyFor(footer, crypto::Purpose::kSegment, "segment " + name));
    ASSIGN_OR_RETURN(opened, f.key->Open(crypto::kWholeObject, footer.substr(crypto::kHeaderBytes),
                                         "segment " + name + " footer"));
    footer = opened;
  } else if (keyring) {
    return Bad(name, "not encrypted, in a volume that is");
  }
  const uint64_t tag = sealed ? crypto::kTagBytes : 0;
  ByteReader r(footer);
  uint64_t version, block_size, per_chunk, nchunks;
  if (!r.GetVarint64(&version) || !r.GetVarint64(&f.segment_id) || !r.GetVarint64(&f.epoch) ||
      !r.GetVarint64(&f.first_seq) || !r.GetVarint64(&f.last_seq) ||
      !r.GetVarint64(&block_size) || !r.GetVarint64(&per_chunk) ||
      !r.GetVarint64(&f.data_blocks) || !r.GetVarint64(&nchunks)) {
    return Bad(name, "truncated footer header");
  }
  if (version != 1 && version != kSegmentFormatVersion) {
    return Bad(name, fmt::format("unsupported format version {}", version));
  }
  if (block_size < 512 || block_size > (1u << 20) || (block_size & (block_size - 1)) ||
      per_chunk == 0 || per_chunk > 4096) {
    return Bad(name, "bad block size or chunk size");
  }
  f.block_size = static_cast<uint32_t>(block_size);
  f.blocks_per_chunk = static_cast<uint32_t>(per_chunk);
  if (nchunks > footer.size() / 12 + 1) return Bad(name, "chunk count too large");
  uint64_t expect_offset = 0, blocks = 0;
  for (uint64_t i = 0; i < nchunks; ++i) {
    ChunkInfo c;
    uint64_t codec;
    std::string_view codec_byte;
    if (!r.GetVarint64(&c.offset) || !r.GetVarint64(&c.stored_len) ||
        !r.GetVarint64(&c.raw_blocks) || !r.GetBytes(1, &codec_byte) ||
        !r.GetFixed64(&c.checksum)) {
      return Bad(name, "truncated chunk table");
    }
    codec = static_cast<uint8_t>(codec_byte[0]);
    if (codec > 1) return Bad(name, fmt::format("unknown chunk codec {}", codec));
    c.codec = static_cast<ChunkCodec>(codec);
    if (c.offset != expect_offset || c.stored_len <= tag || c.stored_len > data_area - c.offset ||
        c.raw_blocks == 0 || c.raw_blocks > per_chunk ||
        (i + 1 < nchunks && c.raw_blocks != per_chunk)) {
      return Bad(name, fmt::format("chunk {} has inconsistent offset or size", i));
    }
    if (c.codec == ChunkCodec::kRaw && c.stored_len != c.raw_blocks * block_size + tag) {
      return Bad(name, fmt::format("raw chunk {} has the wrong length", i));
    }
    // LZ4 expands at most ~255x (a byte per 255 bytes of match): a chunk claiming more
    // cannot decode, and DecodeChunk would first allocate what it claims (up to 4 GiB).
    if (c.codec == ChunkCodec::kLz4 && c.raw_blocks * block_size / 255 > c.stored_len + 1) {
      return Bad(name, fmt::format("LZ4 chunk {} claims more than its bytes can expand to", i));
    }
    expect_offset += c.stored_len;
    blocks += c.raw_blocks;
    f.chunks.push_back(c);
  }
  if (expect_offset != data_area) return Bad(name, "chunks do not fill the data area");
  if (blocks != f.data_blocks) return Bad(name, "chunk blocks do not add up to data_blocks");

  uint64_t nextents;
  if (!r.GetVarint64(&nextents)) return Bad(name, "truncated extent count");
  if (nextents > footer.size()) return Bad(name, "extent count too large");
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < nextents; ++i) {
    SegmentExtent se;
    uint64_t gap, len;
    std::string_view kind_byte;
    if (!r.GetVarint64(&gap) || !r.GetVarint64(&len) || !r.GetBytes(1, &kind_byte)) {
      return Bad(name, "truncated extent list");
    }
    uint8_t kind = static_cast<uint8_t>(kind_byte[0]);
    se.conditional = kind & kConditionalBit;
    kind &= ~kConditionalBit;
    if (!ValidKind(kind)) return Bad(name, fmt::format("extent {} has unknown kind {}", i, kind));
    if (len == 0 || gap > UINT64_MAX - prev_end || len > UINT64_MAX - prev_end - gap) {
      return Bad(name, fmt::format("extent {} has a bad range", i));
    }
    se.extent.first = prev_end + gap;
    se.extent.end = se.extent.first + len;
    se.extent.loc.kind = static_cast<lsm::LocKind>(kind);
    if (se.extent.loc.is_data()) {
      se.extent.loc.segment = f.segment_id;
      if (!r.GetVarint64(&se.extent.loc.index)) return Bad(name, "truncated extent");
      if (se.extent.loc.index > f.data_blocks || len > f.data_blocks - se.extent.loc.index) {
        return Bad(name, fmt::format("extent {} points outside the data stream", i));
      }
    }
    if (se.conditional) {
      std::string_view ek;
      if (!r.GetBytes(1, &ek) || !ValidKind(static_cast<uint8_t>(ek[0]))) {
        return Bad(name, "bad conditional extent");
      }
      se.expected.kind = static_cast<lsm::LocKind>(static_cast<uint8_t>(ek[0]));
      if (se.expected.is_data() &&
          (!r.GetVarint64(&se.expected.segment) || !r.GetVarint64(&se.expected.index))) {
        return Bad(name, "truncated conditional extent");
      }
    }
    prev_end = se.extent.end;
    f.extents.push_back(se);
  }
  if (version == 1) {
    f.durable_through = f.segment_id > 0 ? f.segment_id - 1 : 0;
  } else if (!r.GetVarint64(&f.durable_through) ||
             (f.segment_id > 0 && f.durable_through >= f.segment_id)) {
    return Bad(name, "missing or bad durable_through");
  }
  f.resume = f.segment_id + 1;
  if (version >= 2 && f.is_fence() && !r.empty() &&
      (!r.GetVarint64(&f.resume) || f.resume <= f.segment_id + 1 ||
       f.resume - f.segment_id > kMaxFenceWindow)) {
    return Bad(name, "bad resume");
  }
  if (!r.empty()) return Bad(name, "trailing bytes in footer");
  return f;
}

Result<std::string> DecodeChunk(std::string_view stored, const ChunkInfo& c,
                                uint32_t block_size, const std::string& name,
                                const crypto::ObjectKey* key) {
  const size_t raw_len = c.raw_blocks * block_size;
  if (stored.size() != c.stored_len) return Bad(name, "chunk read returned the wrong length");
  std::string opened;
  if (key) {
    ASSIGN_OR_RETURN(opened, key->Open(c.offset, stored,
                                       fmt::format("segment {}: chunk at offset {}", name,
                                                   c.offset)));
    stored = opened;
  }
  std::string raw;
  if (c.codec == ChunkCodec::kRaw) {
    raw = key ? std::move(opened) : std::string(stored);
  } else {
    raw.resize(raw_len);
    int n = LZ4_decompress_safe(stored.data(), raw.data(), static_cast<int>(stored.size()),
                                static_cast<int>(raw_len));
    if (n < 0 || static_cast<size_t>(n) != raw_len) {
      return Bad(name, fmt::format("chunk at offset {} does not decompress", c.offset));
    }
  }
  if (Checksum64(raw) != c.checksum) {
    return Bad(name, fmt::format("chunk at offset {} fails its checksum", c.offset));
  }
  return raw;
}

}  // namespace portal::volume
