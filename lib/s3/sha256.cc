#include "s3/sha256.h"

#include <openssl/evp.h>

#include "util/assert.h"

namespace portal::s3 {

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  PORTAL_ASSERT(ok == 1 && len == 32, "EVP_Digest(SHA-256) failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace portal::s3
