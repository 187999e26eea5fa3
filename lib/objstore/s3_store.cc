#include "objstore/s3_store.h"

#include <fmt/format.h>

#include <algorithm>

#include "objstore/semantics.h"

namespace portal::objstore {
namespace {

// A truncated page with no entries is legal but useless; this many in a row means the
// server is not making progress.
constexpr int kMaxEmptyPages = 100;

}  // namespace

S3Store::S3Store(std::unique_ptr<s3::Client> client, std::string prefix, std::string url)
    : client_(std::move(client)), prefix_(std::move(prefix)), url_(std::move(url)) {}

Task<Result<std::string>> S3Store::Get(std::string key, std::optional<GetRange> range) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  CO_RETURN_IF_ERROR(ValidateRange(range));
  std::optional<s3::ByteRange> http_range;
  if (range) {
    http_range = s3::ByteRange{range->offset, std::nullopt};
    if (range->length <= UINT64_MAX - range->offset) {
      http_range->last = range->offset + range->length - 1;
    }
  }
  CO_ASSIGN_OR_RETURN(auto got, co_await client_->GetObject(prefix_ + key, http_range));
  if (!range) co_return std::move(got.body);
  if (!got.partial) {
    // The server ignored the Range and sent everything: cut it here.
    CO_ASSIGN_OR_RETURN(auto span, ResolveRange(got.body.size(), range));
    co_return got.body.substr(span.first, span.second - span.first);
  }
  if (got.body.empty()) {
    // A range that starts inside an object returns at least one byte, so an empty 206
    // (s3rver, for an empty object) means the range starts at or past the end.
    co_return Status::InvalidArgument(
        fmt::format("byte range starts at {}, at or past the end of the object", range->offset));
  }
  if (got.range_first && *got.range_first != range->offset) {
    co_return Status::Corruption(fmt::format("{}: asked for bytes from {}, got from {}",
                                             client_->Describe(prefix_ + key), range->offset,
                                             *got.range_first));
  }
  if (got.body.size() > range->length) {
    // s3rver answers "bytes=0-0" with the whole object (it reads the end "0" as absent).
    // Bytes that start where we asked can be cut; anything else is not what we asked for.
    if (!got.range_first) {
      co_return Status::Corruption(fmt::format("{}: asked for {} bytes, got {}",
                                               client_->Describe(prefix_ + key), range->length,
                                               got.body.size()));
    }
    got.body.resize(range->length);
  }
  co_return std::move(got.body);
}

Task<Result<ObjectInfo>> S3Store::Head(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  CO_ASSIGN_OR_RETURN(auto meta, co_await client_->HeadObject(prefix_ + key));
  co_return ObjectInfo{std::move(key), meta.size, std::move(meta.etag)};
}

Task<Status> S3Store::Put(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await client_->PutObject(prefix_ + key, std::move(data), false);
}

Task<Status> S3Store::PutIfAbsent(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await client_->PutObject(prefix_ + key, std::move(data), true);
}

Task<Status> S3Store::PutIfAbsentRope(std::string key, Rope data) {
  // One string: sent as it is and given back to the client's pool after.
  if (data.is_one_string() || data.pieces().size() <= 1) {
    co_return co_await PutIfAbsent(std::move(key),
                                   std::move(data).Flatten(client_->options().buffer_pool));
  }
  // Pieces (a segment whose incompressible chunks are the write buffer's memory): sent as
  // they are, never joined; `data` keeps them alive until the PUT is over.
  CO_RETURN_IF_ERROR(ValidateKey(key));
  std::vector<std::string_view> parts;
  parts.reserve(data.pieces().size());
  for (const Rope::Piece& p : data.pieces()) parts.push_back(p.bytes);
  co_return co_await client_->PutObjectParts(prefix_ + key, std::move(parts), true);
}

Task<Status> S3Store::Delete(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await client_->DeleteObject(prefix_ + key);
}

Task<Result<std::vector<ObjectInfo>>> S3Store::List(std::string prefix, std::string start_after) {
  std::vector<ObjectInfo> out;
  s3::ListRequest req;
  req.prefix = prefix_ + prefix;
  if (!start_after.empty()) req.start_after = prefix_ + start_after;
  req.max_keys = client_->options().list_page_size;
  std::string boundary;  // the last key of the previous page
  int empty_pages = 0;
  for (;;) {
    CO_ASSIGN_OR_RETURN(auto page, co_await client_->ListObjectsV2(req));
    for (auto& e : page.entries) {
      if (!e.key.starts_with(req.prefix)) {
        co_return Status::Corruption("listing returned " + e.key + " outside prefix " + req.prefix);
      }
      // Every page must start past the previous one: that bounds the loop.
      if (!boundary.empty() && e.key <= boundary) {
        co_return Status::Corruption("listing went backwards at " + e.key);
      }
    }
    if (!page.entries.empty()) boundary = page.entries.back().key;
    for (auto& e : page.entries) {
      std::string key = e.key.substr(prefix_.size());
      if (!InListing(key, prefix, start_after)) continue;
      out.push_back(ObjectInfo{std::move(key), e.size, std::move(e.etag)});
    }
    if (!page.truncated) break;
    if (page.entries.empty() && ++empty_pages > kMaxEmptyPages) {
      co_return Status::Corruption("listing makes no progress (empty truncated pages)");
    }
    if (page.next_token == req.continuation_token) {
      co_return Status::Corruption("listing repeats its continuation token");
    }
    req.continuation_token = std::move(page.next_token);
    req.start_after.clear();  // the token carries the position from now on
  }
  // S3 sorts; s3rver returns each page in directory-walk order. Sort, and refuse
  // duplicates (a server repeating keys across pages).
  std::sort(out.begin(), out.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].key == out[i - 1].key) {
      co_return Status::Corruption("listing returned " + out[i].key + " twice");
    }
  }
  co_return out;
}

Task<Status> S3Store::CheckAccess() {
  Status st = co_await client_->Probe(prefix_);
  if (st.ok()) co_return st;
  std::string_view what = st.IsUnavailable() ? "cannot reach S3" : "cannot use";
  co_return Status(st.code(), fmt::format("{} {} (endpoint {}): {}", what, url_,
                                          client_->endpoint(), st.message()));
}

}  // namespace portal::objstore
