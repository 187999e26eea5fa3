// Encryption at rest: AES-256-GCM (OpenSSL EVP) for every object that holds block data or
// block addresses. Format and nonce argument in aead.cc and docs/volume.md "Encryption".
//
// A Keyring holds the volume keys ([storage] encryption_key_file, the first, encrypts;
// encryption_old_key_files only decrypt). Each object gets its own key, derived by
// HKDF-SHA256 from a master key and 32 random bytes (the salt) stored in the object's
// header; inside one object every sealed piece has its own nonce (its offset in the
// object, or the one "whole" slot). So a nonce is never used twice with one key: keys are
// never shared between objects (2^-128 chance per pair of objects with equal salts), and
// within one the counter differs per piece.
//
// Errors: a damaged header, ciphertext or tag is Corruption naming the object; an object
// under a key that is not configured, or any encrypted object read without a keyring, is
// InvalidArgument saying which key id it needs.
//
// Thread-safe: Keyring and ObjectKey are immutable after construction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace portal::crypto {

constexpr size_t kKeyBytes = 32;
constexpr size_t kKeyIdBytes = 8;
constexpr size_t kSaltBytes = 32;
constexpr size_t kTagBytes = 16;
// "PBDAEAD1" | key id 8 | salt 32 | xxh3-64 of (key id, salt) 8.
constexpr size_t kHeaderBytes = 8 + kKeyIdBytes + kSaltBytes + 8;

// What an object key encrypts (part of the HKDF info: a segment key never opens an SST).
// Stored in no object; values may change.
enum class Purpose : uint8_t { kSegment = 1, kMapSst = 2, kJson = 3 };

// Nonce slots inside one object: pieces at distinct offsets, and the one whole-object
// piece (a footer, an SST's index, a JSON object).
constexpr uint64_t kWholeObject = ~uint64_t{0};

// The key of one object: seals and opens its pieces.
class ObjectKey {
 public:
  ObjectKey(const uint8_t key[kKeyBytes], std::string header);
  ObjectKey(const ObjectKey&) = delete;
  ObjectKey& operator=(const ObjectKey&) = delete;
  ~ObjectKey();

  // Appends the ciphertext of `plain` and its tag (plain.size() + kTagBytes bytes) to
  // `out`. `slot`: the piece's offset in the object, or kWholeObject; each slot is sealed
  // at most once per object (the same bytes again on a retry are harmless).
  void Seal(uint64_t slot, std::string_view plain, std::string* out) const;
  // The plaintext of a piece sealed at `slot`; Corruption naming `what` if it does not
  // authenticate.
  Result<std::string> Open(uint64_t slot, std::string_view sealed, const std::string& what) const;
  // The object's header (kHeaderBytes): stored in front of its sealed whole-object piece.
  const std::string& header() const { return header_; }

 private:
  uint8_t key_[kKeyBytes];
  std::string header_;
};

class Keyring {
 public:
  // Fills a buffer with random bytes (salts). Default: OpenSSL RAND_bytes.
  using RandomFn = std::function<void(uint8_t*, size_t)>;

  // keys[0] encrypts new objects; every key decrypts. Each key is kKeyBytes bytes.
  static Result<std::shared_ptr<const Keyring>> FromKeys(std::vector<std::string> keys,
                                                         RandomFn random = {});
  // Reads key files: exactly 32 bytes, or 64 hex digits (one trailing newline allowed).
  static Result<std::shared_ptr<const Keyring>> Load(const std::string& key_file,
                                                     const std::vector<std::string>& old_files);
  // One key file's key (for tools and tests).
  static Result<std::string> ReadKeyFile(const std::string& path);

  // A fresh key for one new object (a new random salt).
  std::shared_ptr<const ObjectKey> NewObjectKey(Purpose purpose) const;
  // The key of a stored object from its header.
  Result<std::shared_ptr<const ObjectKey>> KeyFor(std::string_view header, Purpose purpose,
                                                  const std::string& what) const;

  // header | sealed `plain` (whole-object slot) under a fresh object key.
  std::string SealObject(Purpose purpose, std::string_view plain) const;
  Result<std::string> OpenObject(Purpose purpose, std::string_view sealed,
                                 const std::string& what) const;

  // The current key's id (16 hex digits; HKDF of the key, never the key).
  std::string key_id() const;
  // Every configured key's id, current first ("a, b").
  std::string key_ids() const;

 private:
  struct Master {
    std::string key;
    std::string id;  // kKeyIdBytes raw
  };
  Keyring(std::vector<Master> masters, RandomFn random)
      : masters_(std::move(masters)), random_(std::move(random)) {}

  std::vector<Master> masters_;
  RandomFn random_;
};

// True if `bytes` starts like a sealed object (SealObject's output).
bool IsSealed(std::string_view bytes);
// The key id a header names (16 hex digits), or "" if it is no header.
std::string HeaderKeyId(std::string_view header);
// What reading an encrypted object without a keyring is (InvalidArgument).
Status NoKeyError(std::string_view header, const std::string& what);

// The one entry for whole objects (manifests, snapshot objects): with a keyring, opens a
// sealed object (a plain one is InvalidArgument if it looks like `plain_first_byte`
// starts it, else Corruption); without one, returns plain bytes as they are and refuses
// a sealed object (NoKeyError).
Result<std::string> OpenWholeObject(const Keyring* keyring, Purpose purpose, std::string_view bytes,
                                    char plain_first_byte, const std::string& what);

}  // namespace portal::crypto
