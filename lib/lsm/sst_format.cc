// Map SST layout (little-endian; varints are LEB128):
//
//   +-----------------------------------------------------------------------+
//   | data block 0 | data block 1 | ... |   ~4 KiB each                     |
//   |   count; per extent: first (absolute for the block's first extent,   |
//   |   else the gap after the previous end), length, kind u8 (1 data,     |
//   |   2 zero, 3 hole), data: segment, index                              |
//   +-----------------------------------------------------------------------+
//   | meta = footer + index                                                 |
//   |   footer: format_version, min_block, end_block, extent_count,        |
//   |           data_blocks, summary_count, per segment: id delta, blocks  |
//   |   index:  block_count, per block: first_block, end - first, length,  |
//   |           xxh3 u64 of the block bytes (offsets are cumulative)       |
//   +-----------------------------------------------------------------------+
//   | trailer: meta_len u32 | xxh3(meta) u64 | magic u64 "PBDSST01"         |
//   +-----------------------------------------------------------------------+
//
// Encrypted SSTs (crypto/aead.cc): each data block is sealed at the slot of its offset
// (index lengths and checksums are of the stored, sealed bytes: 16 more per block), the
// meta is replaced by crypto header (56 bytes) | sealed meta, and the trailer's magic is
// "PBDSSTE1". Unencrypted SSTs are unchanged.
#include "lsm/sst_format.h"

#include <fmt/format.h>

#include "util/checksum.h"
#include "util/coding.h"

namespace portal::lsm {
namespace {

constexpr uint64_t kMagic = 0x3130545353444250ULL;  // "PBDSST01"
constexpr uint64_t kSealedMagic = 0x3145545353444250ULL;  // "PBDSSTE1"

Status Bad(const std::string& name, const std::string& what) {
  return Status::Corruption(fmt::format("map SST {}: {}", name, what));
}

}  // namespace

void SstBuilder::Add(const Extent& e) {
  PORTAL_ASSERT(e.end > e.first, "empty extent");
  PORTAL_ASSERT(count_ == 0 || e.first >= index_.end_block, "SST extents out of order");
  if (count_ == 0) index_.min_block = e.first;
  if (block_count_ == 0) {
    block_first_ = e.first;
    PutVarint64(&block_, e.first);
  } else {
    PutVarint64(&block_, e.first - prev_end_);
  }
  PutVarint64(&block_, e.length());
  block_.push_back(static_cast<char>(e.loc.kind));
  if (e.loc.is_data()) {
    PutVarint64(&block_, e.loc.segment);
    PutVarint64(&block_, e.loc.index);
    index_.data_blocks += e.length();
    index_.segment_blocks[e.loc.segment] += e.length();
  }
  prev_end_ = e.end;
  index_.end_block = e.end;
  ++block_count_;
  ++count_;
  if (block_.size() >= block_bytes_) FlushBlock();
}

void SstBuilder::FlushBlock() {
  if (block_count_ == 0) return;
  std::string b;
  PutVarint64(&b, block_count_);
  b += block_;
  if (key_) {
    std::string sealed;
    key_->Seal(out_.size(), b, &sealed);
    b = std::move(sealed);
  }
  SstIndexEntry entry{block_first_, prev_end_, out_.size(), b.size(), Checksum64(b)};
  out_ += b;
  index_.blocks.push_back(entry);
  block_.clear();
  block_count_ = 0;
}

std::string SstBuilder::Finish(SstIndex* index) {
  FlushBlock();
  index_.extent_count = count_;
  index_.index_offset = out_.size();
  std::string meta;
  PutVarint64(&meta, kSstFormatVersion);
  PutVarint64(&meta, index_.min_block);
  PutVarint64(&meta, index_.end_block);
  PutVarint64(&meta, index_.extent_count);
  PutVarint64(&meta, index_.data_blocks);
  PutVarint64(&meta, index_.segment_blocks.size());
  uint64_t prev = 0;
  for (const auto& [seg, blocks] : index_.segment_blocks) {
    PutVarint64(&meta, seg - prev);
    PutVarint64(&meta, blocks);
    prev = seg;
  }
  PutVarint64(&meta, index_.blocks.size());
  for (const auto& b : index_.blocks) {
    PutVarint64(&meta, b.first_block);
    PutVarint64(&meta, b.end_block - b.first_block);
    PutVarint64(&meta, b.length);
    PutFixed64(&meta, b.checksum);
  }
  if (key_) {
    std::string sealed = key_->header();
    key_->Seal(crypto::kWholeObject, meta, &sealed);
    meta = std::move(sealed);
  }
  std::string out = std::move(out_);
  out += meta;
  PutFixed32(&out, static_cast<uint32_t>(meta.size()));
  PutFixed64(&out, Checksum64(meta));
  PutFixed64(&out, key_ ? kSealedMagic : kMagic);
  index_.key = key_;
  if (index) *index = index_;
  return out;
}

Result<uint64_t> ParseSstTrailer(std::string_view trailer, const std::string& name) {
  if (trailer.size() < kSstTrailerSize) return Bad(name, "object shorter than its trailer");
  const auto* p =
      reinterpret_cast<const uint8_t*>(trailer.data() + trailer.size() - kSstTrailerSize);
  const uint64_t magic = LoadLE64(p + 12);
  if (magic != kMagic && magic != kSealedMagic) return Bad(name, "bad magic (not a map SST)");
  return LoadLE32(p);
}

Result<SstIndex> DecodeSstIndex(std::string_view tail, uint64_t size, const std::string& name,
                                const crypto::Keyring* keyring) {
  ASSIGN_OR_RETURN(uint64_t meta_len, ParseSstTrailer(tail, name));
  if (tail.size() < kSstTrailerSize + meta_len || size < kSstTrailerSize + meta_len) {
    return Bad(name, "index length exceeds the object");
  }
  const auto* tp = reinterpret_cast<const uint8_t*>(tail.data() + tail.size() - kSstTrailerSize);
  std::string_view meta = tail.substr(tail.size() - kSstTrailerSize - meta_len, meta_len);
  if (Checksum64(meta) != LoadLE64(tp + 4)) return Bad(name, "index checksum mismatch");
  SstIndex idx;
  idx.index_offset = size - kSstTrailerSize - meta_len;
  std::string opened;  // the decrypted meta
  if (LoadLE64(tp + 12) == kSealedMagic) {
    if (!keyring) return crypto::NoKeyError(meta, "map SST " + name);
    ASSIGN_OR_RETURN(idx.key, keyring->KeyFor(meta, crypto::Purpose::kMapSst, "map SST " + name));
    ASSIGN_OR_RETURN(opened, idx.key->Open(crypto::kWholeObject, meta.substr(crypto::kHeaderBytes),
                                           "map SST " + name + " index"));
    meta = opened;
  } else if (keyring) {
    return Bad(name, "not encrypted, in a volume that is");
  }
  ByteReader r(meta);
  uint64_t version, nsummary, nblocks;
  if (!r.GetVarint64(&version) || !r.GetVarint64(&idx.min_block) ||
      !r.GetVarint64(&idx.end_block) || !r.GetVarint64(&idx.extent_count) ||
      !r.GetVarint64(&idx.data_blocks) || !r.GetVarint64(&nsummary)) {
    return Bad(name, "truncated footer");
  }
  if (version != kSstFormatVersion) return Bad(name, fmt::format("unsupported version {}", version));
  if (nsummary > meta.size()) return Bad(name, "summary count too large");
  uint64_t seg = 0, total = 0;
  for (uint64_t i = 0; i < nsummary; ++i) {
    uint64_t delta, blocks;
    if (!r.GetVarint64(&delta) || !r.GetVarint64(&blocks)) return Bad(name, "truncated summary");
    if ((i > 0 && delta == 0) || blocks == 0) return Bad(name, "bad segment summary");
    seg += delta;
    idx.segment_blocks[seg] = blocks;
    total += blocks;
  }
  if (total != idx.data_blocks) return Bad(name, "segment summary does not add up");
  if (!r.GetVarint64(&nblocks) || nblocks > meta.size()) return Bad(name, "bad block count");
  uint64_t offset = 0, prev_end = idx.min_block;
  for (uint64_t i = 0; i < nblocks; ++i) {
    SstIndexEntry e;
    uint64_t span;
    if (!r.GetVarint64(&e.first_block) || !r.GetVarint64(&span) || !r.GetVarint64(&e.length) ||
        !r.GetFixed64(&e.checksum)) {
      return Bad(name, "truncated index");
    }
    if (span == 0 || e.first_block < prev_end || span > UINT64_MAX - e.first_block ||
        e.length == 0 || e.length > idx.index_offset - offset) {
      return Bad(name, fmt::format("index entry {} is inconsistent", i));
    }
    e.end_block = e.first_block + span;
    e.offset = offset;
    offset += e.length;
    prev_end = e.end_block;
    idx.blocks.push_back(e);
  }
  if (!r.empty()) return Bad(name, "trailing bytes in index");
  if (offset != idx.index_offset) return Bad(name, "blocks do not fill the data area");
  if (!idx.blocks.empty() &&
      (idx.blocks.front().first_block != idx.min_block || prev_end != idx.end_block)) {
    return Bad(name, "key range does not match the index");
  }
  return idx;
}

Result<std::vector<Extent>> DecodeSstBlock(std::string_view bytes, const SstIndexEntry& entry,
                                           const std::string& name, const crypto::ObjectKey* key) {
  if (bytes.size() != entry.length) return Bad(name, "block read returned the wrong length");
  if (Checksum64(bytes) != entry.checksum) {
    return Bad(name, fmt::format("block at offset {} fails its checksum", entry.offset));
  }
  std::string opened;
  if (key) {
    ASSIGN_OR_RETURN(opened, key->Open(entry.offset, bytes,
                                       fmt::format("map SST {}: block at offset {}", name,
                                                   entry.offset)));
    bytes = opened;
  }
  ByteReader r(bytes);
  uint64_t count;
  if (!r.GetVarint64(&count) || count == 0 || count > bytes.size()) {
    return Bad(name, "bad extent count in block");
  }
  std::vector<Extent> out;
  out.reserve(count);
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < count; ++i) {
    Extent e;
    uint64_t pos, len;
    std::string_view kind;
    if (!r.GetVarint64(&pos) || !r.GetVarint64(&len) || !r.GetBytes(1, &kind)) {
      return Bad(name, "truncated block");
    }
    uint64_t first = (i == 0) ? pos : prev_end + pos;
    if ((i > 0 && pos > UINT64_MAX - prev_end) || len == 0 || len > UINT64_MAX - first) {
      return Bad(name, "bad extent range in block");
    }
    e.first = first;
    e.end = first + len;
    uint8_t k = static_cast<uint8_t>(kind[0]);
    if (k < 1 || k > 3) return Bad(name, fmt::format("unknown extent kind {}", k));
    e.loc.kind = static_cast<LocKind>(k);
    if (e.loc.is_data() && (!r.GetVarint64(&e.loc.segment) || !r.GetVarint64(&e.loc.index))) {
      return Bad(name, "truncated data extent");
    }
    prev_end = e.end;
    out.push_back(e);
  }
  if (!r.empty()) return Bad(name, "trailing bytes in block");
  if (out.front().first != entry.first_block || out.back().end != entry.end_block) {
    return Bad(name, "block contents do not match the index");
  }
  return out;
}

}  // namespace portal::lsm
