#include "crypto/aead.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>

namespace portal::crypto {
namespace {

std::shared_ptr<const Keyring> Ring(char fill, std::vector<std::string> more = {}) {
  std::vector<std::string> keys{std::string(kKeyBytes, fill)};
  for (auto& k : more) keys.push_back(k);
  auto r = Keyring::FromKeys(std::move(keys));
  REQUIRE(r.ok());
  return *r;
}

const std::string kPlain = "block data at block 42: the quick brown fox, twice over.";

TEST_CASE("AEAD: whole objects round-trip and hide the plaintext", "[crypto]") {
  auto ring = Ring('k');
  const std::string sealed = ring->SealObject(Purpose::kJson, kPlain);
  CHECK(sealed.size() == kHeaderBytes + kPlain.size() + kTagBytes);
  CHECK(sealed.find("quick brown") == std::string::npos);
  CHECK(IsSealed(sealed));
  CHECK(HeaderKeyId(sealed) == ring->key_id());
  auto opened = ring->OpenObject(Purpose::kJson, sealed, "manifest/1");
  REQUIRE(opened.ok());
  CHECK(*opened == kPlain);
  // Another purpose derives another key: a JSON key never opens a segment's piece.
  CHECK(ring->OpenObject(Purpose::kSegment, sealed, "x").status().IsCorruption());
}

TEST_CASE("AEAD: pieces open only at their own slot", "[crypto]") {
  auto ring = Ring('k');
  auto key = ring->NewObjectKey(Purpose::kSegment);
  std::string a, b;
  key->Seal(0, kPlain, &a);
  key->Seal(65536, kPlain, &b);
  CHECK(a != b);  // same plaintext, different nonce
  CHECK(key->Open(0, a, "seg").ok());
  CHECK(key->Open(65536, a, "seg").status().IsCorruption());
  auto again = ring->KeyFor(key->header(), Purpose::kSegment, "seg");
  REQUIRE(again.ok());
  auto plain = (*again)->Open(65536, b, "seg");
  REQUIRE(plain.ok());
  CHECK(*plain == kPlain);
}

TEST_CASE("AEAD: a wrong or missing key is InvalidArgument saying so", "[crypto]") {
  auto ring = Ring('k');
  auto other = Ring('o');
  const std::string sealed = ring->SealObject(Purpose::kJson, kPlain);
  auto wrong = other->OpenObject(Purpose::kJson, sealed, "manifest/7");
  CHECK(wrong.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(wrong.status().message(), Catch::Contains("manifest/7") &&
                                           Catch::Contains(ring->key_id()) &&
                                           Catch::Contains(other->key_id()));
  auto none = OpenWholeObject(nullptr, Purpose::kJson, sealed, '{', "manifest/7");
  CHECK(none.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(none.status().message(), Catch::Contains("encryption_key_file"));
  // A plain object read with a key: the volume was written without encryption.
  auto plain = OpenWholeObject(ring.get(), Purpose::kJson, "{\"a\":1}", '{', "manifest/7");
  CHECK(plain.status().code() == Status::Code::kInvalidArgument);
  CHECK_THAT(plain.status().message(), Catch::Contains("not encrypted"));
  // Without a key, plain bytes pass through unchanged.
  auto through = OpenWholeObject(nullptr, Purpose::kJson, "{\"a\":1}", '{', "m");
  REQUIRE(through.ok());
  CHECK(*through == "{\"a\":1}");
}

TEST_CASE("AEAD: rotation: old keys open, new objects use the first key", "[crypto]") {
  auto old_ring = Ring('o');
  const std::string old_obj = old_ring->SealObject(Purpose::kJson, kPlain);
  auto rotated = Ring('n', {std::string(kKeyBytes, 'o')});
  CHECK(rotated->key_id() != old_ring->key_id());
  auto opened = rotated->OpenObject(Purpose::kJson, old_obj, "snap/x");
  REQUIRE(opened.ok());
  CHECK(*opened == kPlain);
  CHECK(HeaderKeyId(rotated->SealObject(Purpose::kJson, kPlain)) == rotated->key_id());
}

TEST_CASE("AEAD: every flipped bit is Corruption naming the object", "[crypto]") {
  auto ring = Ring('k');
  const std::string sealed = ring->SealObject(Purpose::kJson, kPlain);
  // Every bit of the header (magic, key id, salt, check), ciphertext and tag.
  for (size_t byte = 0; byte < sealed.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = sealed;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      auto r = OpenWholeObject(ring.get(), Purpose::kJson, bad, '{', "snap/abc");
      INFO("byte " << byte << " bit " << bit);
      REQUIRE(r.status().IsCorruption());
      CHECK_THAT(r.status().message(), Catch::Contains("snap/abc"));
    }
  }
  // Truncated: header or tag cut.
  CHECK(ring->OpenObject(Purpose::kJson, sealed.substr(0, 20), "s").status().IsCorruption());
  CHECK(ring->OpenObject(Purpose::kJson, sealed.substr(0, sealed.size() - 1), "s")
            .status()
            .IsCorruption());
}

TEST_CASE("AEAD: each object gets its own salt, so no two objects share a key", "[crypto]") {
  auto ring = Ring('k');
  std::set<std::string> headers, ciphertexts;
  for (int i = 0; i < 1000; ++i) {
    auto key = ring->NewObjectKey(Purpose::kSegment);
    headers.insert(key->header());
    std::string ct;
    key->Seal(0, kPlain, &ct);  // same slot, same plaintext in every object
    ciphertexts.insert(ct);
  }
  CHECK(headers.size() == 1000);
  CHECK(ciphertexts.size() == 1000);
}

TEST_CASE("AEAD: key files hold 32 raw bytes or 64 hex digits", "[crypto]") {
  char dir[] = "/tmp/portal_keyXXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::string path = std::string(dir) + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  };
  const std::string raw(32, '\x07');
  const std::string hex = "0707070707070707070707070707070707070707070707070707070707070707";
  auto a = Keyring::ReadKeyFile(write("raw", raw));
  auto b = Keyring::ReadKeyFile(write("hex", hex + "\n"));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(*a == *b);
  for (const std::string& bad : {std::string("passphrase\n"), std::string(31, 'x'),
                                 std::string(33, 'x'), hex.substr(2) + "zz", hex + "00"}) {
    auto r = Keyring::ReadKeyFile(write("bad", bad));
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("32 raw bytes or 64 hex digits"));
  }
  CHECK(Keyring::ReadKeyFile(std::string(dir) + "/missing").status().code() ==
        Status::Code::kInvalidArgument);
  auto loaded = Keyring::Load(write("cur", hex), {write("old", std::string(32, 'o'))});
  REQUIRE(loaded.ok());
  CHECK((*loaded)->key_ids().find(", ") != std::string::npos);
  std::system((std::string("rm -rf ") + dir).c_str());
}

}  // namespace
}  // namespace portal::crypto
