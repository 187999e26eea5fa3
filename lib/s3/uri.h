// Percent-encoding and canonical query strings for S3 requests.
//
// libcurl 7.88 signs (CURLOPT_AWS_SIGV4) the path and query exactly as they appear in the
// URL, so the URL we build must already be in SigV4 canonical form:
// - path: every byte but the unreserved A-Z a-z 0-9 - _ . ~ becomes %XX (upper case);
//   '/' stays (S3 object keys are not double-encoded);
// - query: parameters sorted by encoded name (then value), name and value encoded as
//   above with '/' encoded too, "name=" for an empty value, joined by '&'.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portal::s3 {

std::string UriEncode(std::string_view s, bool encode_slash);

// Decodes %XX escapes; with plus_is_space, '+' is a space (S3 list responses with
// encoding-type=url use form encoding). nullopt on a malformed escape.
std::optional<std::string> UriDecode(std::string_view s, bool plus_is_space);

class QueryString {
 public:
  QueryString& Add(std::string name, std::string value = "");
  bool empty() const { return params_.empty(); }
  // The canonical form, without the leading '?'.
  std::string Build() const;

 private:
  std::vector<std::pair<std::string, std::string>> params_;
};

}  // namespace portal::s3
