#include "s3/sha256.h"

#include <openssl/evp.h>

#include <memory>

#include "util/assert.h"

namespace portal::s3 {

namespace {

std::string Hex(const unsigned char* digest, unsigned int len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  PORTAL_ASSERT(ok == 1 && len == 32, "EVP_Digest(SHA-256) failed");
  return Hex(digest, len);
}

std::string Sha256Hex(const std::vector<std::string_view>& parts) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  PORTAL_ASSERT(ctx != nullptr, "EVP_MD_CTX_new failed");
  int ok = EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (std::string_view p : parts) ok &= EVP_DigestUpdate(ctx.get(), p.data(), p.size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ok &= EVP_DigestFinal_ex(ctx.get(), digest, &len);
  PORTAL_ASSERT(ok == 1 && len == 32, "SHA-256 failed");
  return Hex(digest, len);
}

}  // namespace portal::s3
