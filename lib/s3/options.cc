#include "s3/options.h"

#include <cstdlib>

namespace portal::s3 {

EnvLookup ProcessEnvLookup() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<ClientOptions> ClientOptionsFromEnv(const EnvLookup& lookup) {
  ClientOptions o;
  // Empty values count as unset, as the AWS SDKs treat them.
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto v = lookup(name);
    if (v && v->empty()) return std::nullopt;
    return v;
  };
  if (auto v = get("AWS_ACCESS_KEY_ID")) o.access_key_id = *v;
  if (auto v = get("AWS_SECRET_ACCESS_KEY")) o.secret_access_key = *v;
  if (auto v = get("AWS_SESSION_TOKEN")) o.session_token = *v;
  if (auto v = get("AWS_REGION")) {
    o.region = *v;
  } else if (auto d = get("AWS_DEFAULT_REGION")) {
    o.region = *d;
  }
  if (auto v = get("AWS_ENDPOINT_URL")) {
    o.endpoint = *v;
  } else if (auto e = get("AWS_ENDPOINT")) {
    o.endpoint = *e;
  }
  if (auto v = get("AWS_CA_BUNDLE")) o.ca_file = *v;
  if (auto v = get("AWS_ALLOW_HTTP")) {
    if (*v == "true" || *v == "1" || *v == "TRUE" || *v == "True") {
      o.allow_http = true;
    } else if (*v == "false" || *v == "0" || *v == "FALSE" || *v == "False") {
      o.allow_http = false;
    } else {
      return Status::InvalidArgument("AWS_ALLOW_HTTP must be true or false (got '" + *v + "')");
    }
  }
  return o;
}

}  // namespace portal::s3
