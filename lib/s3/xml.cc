#include "s3/xml.h"

#include <charconv>
#include <pugixml.hpp>

#include "s3/uri.h"

namespace portal::s3 {
namespace {

bool Parse(std::string_view body, pugi::xml_document* doc) {
  if (body.empty()) return false;
  return static_cast<bool>(doc->load_buffer(body.data(), body.size()));
}

}  // namespace

std::optional<ErrorBody> ParseErrorBody(std::string_view body) {
  pugi::xml_document doc;
  if (!Parse(body, &doc)) return std::nullopt;
  pugi::xml_node err = doc.child("Error");
  if (!err) return std::nullopt;
  ErrorBody out;
  out.code = err.child_value("Code");
  out.message = err.child_value("Message");
  out.region = err.child_value("Region");
  if (out.code.empty()) return std::nullopt;
  return out;
}

Result<ListPage> ParseListObjectsV2(std::string_view body) {
  pugi::xml_document doc;
  if (!Parse(body, &doc)) return Status::Corruption("ListObjectsV2 response is not XML");
  pugi::xml_node root = doc.child("ListBucketResult");
  if (!root) return Status::Corruption("ListObjectsV2 response has no ListBucketResult");
  bool url_encoded = std::string_view(root.child_value("EncodingType")) == "url";
  ListPage page;
  std::string_view truncated = root.child_value("IsTruncated");
  if (truncated != "true" && truncated != "false") {
    return Status::Corruption("ListObjectsV2 response has no valid IsTruncated");
  }
  page.truncated = truncated == "true";
  page.next_token = root.child_value("NextContinuationToken");
  if (page.truncated && page.next_token.empty()) {
    return Status::Corruption("truncated ListObjectsV2 response without NextContinuationToken");
  }
  for (pugi::xml_node c = root.child("Contents"); c; c = c.next_sibling("Contents")) {
    ListEntry e;
    std::string_view key = c.child_value("Key");
    if (url_encoded) {
      auto decoded = UriDecode(key, /*plus_is_space=*/true);
      if (!decoded) return Status::Corruption("bad URL encoding in listed key");
      e.key = std::move(*decoded);
    } else {
      e.key = std::string(key);
    }
    if (e.key.empty()) return Status::Corruption("listed object without a Key");
    std::string_view size = c.child_value("Size");
    auto [p, ec] = std::from_chars(size.data(), size.data() + size.size(), e.size);
    if (ec != std::errc() || p != size.data() + size.size() || size.empty()) {
      return Status::Corruption("listed object " + e.key + " has no valid Size");
    }
    e.etag = UnquoteEtag(c.child_value("ETag"));
    page.entries.push_back(std::move(e));
  }
  return page;
}

std::string UnquoteEtag(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  return std::string(etag);
}

}  // namespace portal::s3
