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

std::string_view HttpResponse::Header(std::string_view lower_name) const {
  return Find(headers, lower_name);
}

}  // namespace portal::s3
