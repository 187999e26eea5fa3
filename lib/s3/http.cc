#include "s3/http.h"

namespace portal::s3 {
namespace {

std::string_view Find(const std::vector<std::pair<std::string, std::string>>& headers,
                      std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view lower_name) const {
  return Find(headers, lower_name);
}

uint64_t HttpRequest::BodySize() const {
  if (body_parts.empty()) return body.size();
  uint64_t n = 0;
  for (std::string_view p : body_parts) n += p.size();
  return n;
}

std::string HttpRequest::JoinedBody() const {
  if (body_parts.empty()) return body;
  std::string out;
  out.reserve(BodySize());
  for (std::string_view p : body_parts) out.append(p);
  return out;
}

std::string_view HttpResponse::Header(std::string_view lower_name) const {
  return Find(headers, lower_name);
}

}  // namespace portal::s3
