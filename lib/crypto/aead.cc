// Sealed pieces (little-endian):
//
//   header (kHeaderBytes, in front of an object's whole-object piece):
//     magic u64 "PBDAEAD1" | key id (8 bytes) | salt (32 bytes) | xxh3-64 of id + salt u64
//   sealed piece: AES-256-GCM ciphertext (as long as the plaintext) | tag (16 bytes)
//
// Keys: object key = HKDF-SHA256(ikm = master key, salt = the header's salt,
// info = "portalbd object key v1" + purpose byte), 32 bytes; key id = the first 8 bytes
// of HKDF-SHA256(ikm = master key, no salt, info = "portalbd key id v1").
// Nonce (96 bits): the piece's slot as u64 LE, then 4 zero bytes. No additional data: the
// object key already binds the object (its salt) and the purpose, the slot the position.
//
// Why nonces never repeat under one key: a key is used by one object only (salts are 256
// random bits, drawn once per object: two objects sharing one has probability 2^-256 per
// pair) and every piece of an object has its own slot. A writer that retries a PUT sends
// the bytes it encoded the first time, or encodes again with the same object key and the
// same plaintext (the segment uploader: same footer, same data, same bytes), so a nonce
// is never reused with different plaintext. Nothing is counted, so there is no bound to
// track per key beyond GCM's own (2^32 pieces per object key: far above any object).
#include "crypto/aead.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <climits>
#include <cstring>
#include <fstream>
#include <iterator>

#include "util/checksum.h"
#include "util/coding.h"

namespace portal::crypto {
namespace {

// "PBDAEAD1" read as a little-endian u64.
uint64_t MagicValue() {
  static constexpr char kText[8] = {'P', 'B', 'D', 'A', 'E', 'A', 'D', '1'};
  return LoadLE64(reinterpret_cast<const uint8_t*>(kText));
}

void Hkdf(std::string_view ikm, std::string_view salt, std::string_view info, uint8_t* out,
          size_t out_len) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  PORTAL_ASSERT(kdf != nullptr, "OpenSSL has no HKDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  PORTAL_ASSERT(ctx != nullptr, "EVP_KDF_CTX_new failed");
  OSSL_PARAM params[5];
  OSSL_PARAM* p = params;
  char digest[] = "SHA256";
  *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()),
                                           ikm.size());
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                           info.size());
  if (!salt.empty()) {
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()),
                                             salt.size());
  }
  *p = OSSL_PARAM_construct_end();
  const int ok = EVP_KDF_derive(ctx, out, out_len, params);
  EVP_KDF_CTX_free(ctx);
  PORTAL_ASSERT(ok == 1, "HKDF failed");
}

std::string Hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

void Nonce(uint64_t slot, uint8_t nonce[12]) {
  std::memset(nonce, 0, 12);
  for (int i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(slot >> (8 * i));
}

struct CipherCtx {
  CipherCtx() : ctx(EVP_CIPHER_CTX_new()) { PORTAL_ASSERT(ctx, "EVP_CIPHER_CTX_new failed"); }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  EVP_CIPHER_CTX* ctx;
};

std::string ObjectInfo(Purpose purpose) {
  std::string info = "portalbd object key v1";
  info.push_back(static_cast<char>(purpose));
  return info;
}

}  // namespace

ObjectKey::ObjectKey(const uint8_t key[kKeyBytes], std::string header)
    : header_(std::move(header)) {
  std::memcpy(key_, key, kKeyBytes);
}

ObjectKey::~ObjectKey() { OPENSSL_cleanse(key_, sizeof(key_)); }

void ObjectKey::Seal(uint64_t slot, std::string_view plain, std::string* out) const {
  PORTAL_ASSERT(plain.size() < INT_MAX, "piece too large to seal");
  uint8_t nonce[12];
  Nonce(slot, nonce);
  CipherCtx c;
  int ok = EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, key_, nonce);
  const size_t at = out->size();
  out->resize(at + plain.size() + kTagBytes);
  auto* dst = reinterpret_cast<uint8_t*>(out->data() + at);
  int len = 0, fin = 0;
  ok &= EVP_EncryptUpdate(c.ctx, dst, &len, reinterpret_cast<const uint8_t*>(plain.data()),
                          static_cast<int>(plain.size()));
  ok &= EVP_EncryptFinal_ex(c.ctx, dst + len, &fin);
  ok &= EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, dst + plain.size());
  PORTAL_ASSERT(ok == 1 && static_cast<size_t>(len + fin) == plain.size(), "AES-GCM seal failed");
}

Result<std::string> ObjectKey::Open(uint64_t slot, std::string_view sealed,
                                    const std::string& what) const {
  if (sealed.size() < kTagBytes || sealed.size() >= INT_MAX) {
    return Status::Corruption(what + ": encrypted piece too short");
  }
  const size_t n = sealed.size() - kTagBytes;
  uint8_t nonce[12];
  Nonce(slot, nonce);
  CipherCtx c;
  std::string plain(n, '\0');
  int len = 0, fin = 0;
  int ok = EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, key_, nonce);
  ok &= EVP_DecryptUpdate(c.ctx, reinterpret_cast<uint8_t*>(plain.data()), &len,
                          reinterpret_cast<const uint8_t*>(sealed.data()), static_cast<int>(n));
  ok &= EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes,
                            const_cast<char*>(sealed.data() + n));
  if (ok != 1 ||
      EVP_DecryptFinal_ex(c.ctx, reinterpret_cast<uint8_t*>(plain.data()) + len, &fin) != 1) {
    return Status::Corruption(what + ": fails authentication (damaged or altered)");
  }
  return plain;
}

Result<std::shared_ptr<const Keyring>> Keyring::FromKeys(std::vector<std::string> keys,
                                                         RandomFn random) {
  if (keys.empty()) return Status::InvalidArgument("no encryption key");
  std::vector<Master> masters;
  for (std::string& k : keys) {
    if (k.size() != kKeyBytes) {
      return Status::InvalidArgument(
          fmt::format("an encryption key must be {} bytes, not {}", kKeyBytes, k.size()));
    }
    Master m;
    m.id.resize(kKeyIdBytes);
    Hkdf(k, "", "portalbd key id v1", reinterpret_cast<uint8_t*>(m.id.data()), kKeyIdBytes);
    m.key = std::move(k);
    masters.push_back(std::move(m));
  }
  if (!random) {
    random = [](uint8_t* out, size_t n) {
      PORTAL_ASSERT(RAND_bytes(out, static_cast<int>(n)) == 1, "RAND_bytes failed");
    };
  }
  return std::shared_ptr<const Keyring>(new Keyring(std::move(masters), std::move(random)));
}

Result<std::string> Keyring::ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read encryption key file " + path);
  std::string bytes;
  bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (bytes.size() > 4096) bytes.resize(4096);  // only for the message
  if (bytes.size() == kKeyBytes) return bytes;
  std::string hex = bytes;
  if (!hex.empty() && hex.back() == '\n') hex.pop_back();
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool ok = hex.size() == 2 * kKeyBytes;
  std::string key;
  for (size_t i = 0; ok && i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    ok = hi >= 0 && lo >= 0;
    key.push_back(static_cast<char>(hi * 16 + lo));
  }
  if (!ok) {
    return Status::InvalidArgument(fmt::format(
        "encryption key file {} holds {} bytes: it must hold exactly 32 raw bytes or 64 hex "
        "digits (e.g. `openssl rand -hex 32 > {}`)",
        path, bytes.size(), path));
  }
  return key;
}

Result<std::shared_ptr<const Keyring>> Keyring::Load(const std::string& key_file,
                                                     const std::vector<std::string>& old_files) {
  std::vector<std::string> keys;
  ASSIGN_OR_RETURN(std::string current, ReadKeyFile(key_file));
  keys.push_back(std::move(current));
  for (const std::string& f : old_files) {
    ASSIGN_OR_RETURN(std::string old, ReadKeyFile(f));
    keys.push_back(std::move(old));
  }
  return FromKeys(std::move(keys));
}

std::shared_ptr<const ObjectKey> Keyring::NewObjectKey(Purpose purpose) const {
  const Master& m = masters_.front();
  std::string salt(kSaltBytes, '\0');
  random_(reinterpret_cast<uint8_t*>(salt.data()), salt.size());
  std::string header;
  PutFixed64(&header, MagicValue());
  header += m.id;
  header += salt;
  PutFixed64(&header, Checksum64(std::string_view(header).substr(8)));
  uint8_t key[kKeyBytes];
  Hkdf(m.key, salt, ObjectInfo(purpose), key, kKeyBytes);
  auto out = std::make_shared<const ObjectKey>(key, std::move(header));
  OPENSSL_cleanse(key, sizeof(key));
  return out;
}

// Validates a header: Corruption if it is damaged.
static Status CheckHeader(std::string_view header, const std::string& what) {
  if (header.size() < kHeaderBytes)
    return Status::Corruption(what + ": encryption header truncated");
  const auto* p = reinterpret_cast<const uint8_t*>(header.data());
  if (LoadLE64(p) != MagicValue())
    return Status::Corruption(what + ": bad encryption header magic");
  if (LoadLE64(p + kHeaderBytes - 8) != Checksum64(header.substr(8, kKeyIdBytes + kSaltBytes))) {
    return Status::Corruption(what + ": encryption header checksum mismatch");
  }
  return Status::Ok();
}

Result<std::shared_ptr<const ObjectKey>> Keyring::KeyFor(std::string_view header, Purpose purpose,
                                                         const std::string& what) const {
  RETURN_IF_ERROR(CheckHeader(header, what));
  const std::string_view id = header.substr(8, kKeyIdBytes);
  for (const Master& m : masters_) {
    if (m.id != id) continue;
    uint8_t key[kKeyBytes];
    Hkdf(m.key, header.substr(8 + kKeyIdBytes, kSaltBytes), ObjectInfo(purpose), key, kKeyBytes);
    auto out = std::make_shared<const ObjectKey>(key, std::string(header.substr(0, kHeaderBytes)));
    OPENSSL_cleanse(key, sizeof(key));
    return out;
  }
  return Status::InvalidArgument(fmt::format(
      "{} is encrypted under key id {}, but the configured encryption keys have id(s) {}: wrong "
      "encryption_key_file (or a key missing from encryption_old_key_files)",
      what, Hex(id), key_ids()));
}

std::string Keyring::SealObject(Purpose purpose, std::string_view plain) const {
  auto key = NewObjectKey(purpose);
  std::string out = key->header();
  key->Seal(kWholeObject, plain, &out);
  return out;
}

Result<std::string> Keyring::OpenObject(Purpose purpose, std::string_view sealed,
                                        const std::string& what) const {
  ASSIGN_OR_RETURN(auto key, KeyFor(sealed, purpose, what));
  return key->Open(kWholeObject, sealed.substr(kHeaderBytes), what);
}

std::string Keyring::key_id() const { return Hex(masters_.front().id); }

std::string Keyring::key_ids() const {
  std::string out;
  for (const Master& m : masters_) out += (out.empty() ? "" : ", ") + Hex(m.id);
  return out;
}

bool IsSealed(std::string_view bytes) {
  return bytes.size() >= 8 &&
         LoadLE64(reinterpret_cast<const uint8_t*>(bytes.data())) == MagicValue();
}

std::string HeaderKeyId(std::string_view header) {
  if (header.size() < kHeaderBytes || !IsSealed(header)) return "";
  return Hex(header.substr(8, kKeyIdBytes));
}

Status NoKeyError(std::string_view header, const std::string& what) {
  return Status::InvalidArgument(
      fmt::format("{} is encrypted (key id {}) and no [storage] encryption_key_file is configured",
                  what, HeaderKeyId(header)));
}

Result<std::string> OpenWholeObject(const Keyring* keyring, Purpose purpose, std::string_view bytes,
                                    char plain_first_byte, const std::string& what) {
  if (keyring == nullptr) {
    if (IsSealed(bytes)) return NoKeyError(bytes, what);
    return std::string(bytes);
  }
  if (IsSealed(bytes)) return keyring->OpenObject(purpose, bytes, what);
  if (!bytes.empty() && bytes.front() == plain_first_byte) {
    return Status::InvalidArgument(what +
                                   " is not encrypted, but an encryption key is configured: "
                                   "the volume was written without encryption");
  }
  return Status::Corruption(what + ": neither an encrypted object nor a plain one");
}

}  // namespace portal::crypto
