// The S3 XML documents we read, parsed with pugixml: error bodies and ListObjectsV2 pages.
// Input is untrusted: malformed documents become Corruption, never assertions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::s3 {

// <Error><Code>NoSuchKey</Code><Message>...</Message>...</Error>
struct ErrorBody {
  std::string code;
  std::string message;
  std::string region;  // <Region>, sent with some redirects and region errors
};
// nullopt when `body` is not an S3 error document (empty, HTML from a proxy, ...).
std::optional<ErrorBody> ParseErrorBody(std::string_view body);

struct ListEntry {
  std::string key;
  uint64_t size = 0;
  std::string etag;  // unquoted
};
struct ListPage {
  std::vector<ListEntry> entries;
  bool truncated = false;
  std::string next_token;  // NextContinuationToken, set when truncated
};
// A ListObjectsV2 result. Keys are URL-decoded if the response says
// <EncodingType>url</EncodingType> (servers that ignore encoding-type=url send raw keys and
// no EncodingType element). Corruption if malformed, or truncated without a token.
Result<ListPage> ParseListObjectsV2(std::string_view body);

// "\"abc\"" -> "abc" (S3 quotes etags in headers and listings).
std::string UnquoteEtag(std::string_view etag);

}  // namespace portal::s3
