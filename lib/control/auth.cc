#include "control/auth.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace portal::control {

namespace {

using Digest = std::array<unsigned char, 32>;

Digest Sha256(std::string_view s) {
  Digest d{};
  unsigned int n = 0;
  // EVP_Digest with SHA-256 cannot fail short of memory exhaustion; a zero digest then
  // makes both sides equal only if both failed, and the lengths differ anyway.
  EVP_Digest(s.data(), s.size(), d.data(), &n, EVP_sha256(), nullptr);
  return d;
}

ErrorReply Unauthenticated(std::string message) {
  return ErrorReply{std::string(kUnauthenticated), std::move(message)};
}

}  // namespace

Result<std::string> LoadTokenFile(const std::string& path, std::string_view key) {
  auto fail = [&](std::string_view what) {
    return Status::InvalidArgument(fmt::format("{} {}: {}", key, path, what));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return fail(std::strerror(err));
  }
  if ((st.st_mode & S_IROTH) != 0) {
    ::close(fd);
    return fail(
        fmt::format("is readable by every user (mode {:o}); chmod o-r it (a Kubernetes "
                    "Secret: defaultMode 0400)",
                    st.st_mode & 07777));
  }
  std::string text;
  char buf[4096];
  while (text.size() <= kMaxTokenBytes + 64) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail(std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' ||
                           text.back() == '\t')) {
    text.pop_back();
  }
  if (text.size() < kMinTokenBytes) {
    return fail(fmt::format("the token is {} bytes; it needs at least {} (openssl rand -hex 32)",
                            text.size(), kMinTokenBytes));
  }
  if (text.size() > kMaxTokenBytes) {
    return fail(fmt::format("the token is longer than {} bytes", kMaxTokenBytes));
  }
  for (char c : text) {
    if (c < 0x21 || c > 0x7e) return fail("the token holds a byte that is not printable ASCII");
  }
  return text;
}

bool TokenEquals(std::string_view expected, std::string_view given) {
  const Digest a = Sha256(expected);
  const Digest b = Sha256(given);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<ErrorReply> CheckAuthLine(std::string_view line, std::string_view expected,
                                        std::string* id_json) {
  using nlohmann::json;
  id_json->clear();
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Unauthenticated("the first request must be {\"op\":\"auth\",\"token\":\"...\"}");
  }
  if (auto it = j.find("id"); it != j.end() && (it->is_string() || it->is_number_integer())) {
    *id_json = it->dump(-1, ' ', false, json::error_handler_t::replace);
  }
  auto op = j.find("op");
  if (op == j.end() || !op->is_string() || op->get<std::string>() != "auth") {
    return Unauthenticated(
        "authenticate first: the first request on a TCP connection must be "
        "{\"op\":\"auth\",\"token\":\"...\"}");
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "op" && k != "token" && k != "id") {
      return Unauthenticated(fmt::format("unknown auth field '{}'", k));
    }
  }
  auto token = j.find("token");
  if (token == j.end() || !token->is_string()) {
    return Unauthenticated("auth needs a 'token' (a string)");
  }
  if (!TokenEquals(expected, token->get_ref<const std::string&>())) {
    return Unauthenticated("wrong token");
  }
  return std::nullopt;
}

std::string EncodeAuthRequest(std::string_view token) {
  nlohmann::ordered_json j;
  j["op"] = "auth";
  j["token"] = std::string(token);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace portal::control
