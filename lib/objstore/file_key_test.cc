#include "objstore/file_key.h"

#include <catch2/catch.hpp>

#include "env/sim_env.h"

namespace portal::objstore::filekey {
namespace {

// Decodes a relative path the way FileStore's List walks it; nullopt if not ours.
std::optional<std::string> DecodePath(const std::string& path) {
  std::string key, pending;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    bool last = slash == std::string::npos;
    std::string name = path.substr(start, last ? std::string::npos : slash - start);
    DecodedName d = DecodeName(pending, name, /*is_dir=*/!last);
    if (last) {
      if (d.kind != NameKind::kFile) return std::nullopt;
      return key + d.text;
    }
    if (d.kind == NameKind::kContinued) {
      pending += d.text;
    } else if (d.kind == NameKind::kDir) {
      key += d.text + "/";
      pending.clear();
    } else {
      return std::nullopt;
    }
    start = slash + 1;
  }
}

void CheckSafe(const std::string& path) {
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string name =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    INFO(name);
    CHECK_FALSE(name.empty());
    CHECK(name.size() <= 255);
    CHECK(name[0] != '.');
    for (char c : name) {
      CHECK(((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.' || c == '%' || c == '~' || c == '+'));
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
}

TEST_CASE("file keys encode as documented", "[objstore][filekey]") {
  CHECK(EncodeKey("seg/00000042.seg") == "seg~/00000042.seg");
  CHECK(EncodeKey("a b/../c") == "a%20b~/%2E.~/c");
  CHECK(EncodeKey("x//") == "x~/%~/%");
  CHECK(EncodeKey("/") == "%~/%");
  CHECK(EncodeKey(".tmp-1") == "%2Etmp-1");
  CHECK(EncodeKey("a~+") == "a%7E%2B");
  CHECK(EncodeKey(std::string("\0\xff", 2)) == "%00%FF");
}

TEST_CASE("every single-byte key round-trips to a safe name", "[objstore][filekey]") {
  for (int b = 0; b < 256; ++b) {
    std::string key(1, static_cast<char>(b));
    std::string path = EncodeKey(key);
    INFO(b << " -> " << path);
    CheckSafe(path);
    CHECK(DecodePath(path) == key);
  }
}

TEST_CASE("random and long keys round-trip and stay within NAME_MAX", "[objstore][filekey]") {
  Prng rng(42);
  const std::string alphabet = std::string("/./.a-b_~+% ") + "\x01\x7f\x80\xff";
  for (int i = 0; i < 2000; ++i) {
    size_t len = 1 + rng.Below(i % 10 == 0 ? 1024 : 40);
    std::string key;
    for (size_t j = 0; j < len; ++j) {
      key.push_back(rng.Chance(1, 2) ? alphabet[rng.Below(alphabet.size())]
                                     : static_cast<char>(rng.Next()));
    }
    std::string path = EncodeKey(key);
    CheckSafe(path);
    REQUIRE(DecodePath(path) == key);
  }
  // Cuts that fall just before a '.' (the piece after the cut must not start with one).
  for (size_t n : {241, 242, 243, 600, 1024}) {
    for (const std::string& key : {std::string(n, '.'), "x/" + std::string(n - 2, '.')}) {
      INFO(key.size());
      std::string path = EncodeKey(key);
      CheckSafe(path);
      CHECK(DecodePath(path) == key);
    }
  }
  // The worst case: 1024 bytes that all need escaping, in one segment.
  std::string worst(1024, '\xff');
  std::string path = EncodeKey(worst);
  CheckSafe(path);
  CHECK(path.find("+/") != std::string::npos);  // cut into continued pieces
  CHECK(DecodePath(path) == worst);
}

TEST_CASE("names that are not ours are foreign", "[objstore][filekey]") {
  CHECK(DecodeName("", ".hidden", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", ".tmp-0123", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", "has space", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", "%41", false).kind == NameKind::kForeign);  // 'A' needs no escape
  CHECK(DecodeName("", "%4a", false).kind == NameKind::kForeign);  // lower-case hex
  CHECK(DecodeName("", "%zz", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", "%2", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", "dir", true).kind == NameKind::kForeign);  // a directory needs '~'
  CHECK(DecodeName("", "x+", false).kind == NameKind::kForeign);
  CHECK(DecodeName("", "README.md", false).kind == NameKind::kFile);
  CHECK(DecodeName("", "seg~", true).text == "seg");
  CHECK(DecodeName("", "%", false).text.empty());
  CHECK(DecodeName("", "%", false).kind == NameKind::kFile);
}

TEST_CASE("a prefix starts the walk at its complete segments", "[objstore][filekey]") {
  CHECK(EncodePrefixDir("seg/0001").dir == "seg~");
  CHECK(EncodePrefixDir("seg/0001").key_prefix == "seg/");
  CHECK(EncodePrefixDir("abc").dir.empty());
  CHECK(EncodePrefixDir("abc").key_prefix.empty());
  CHECK(EncodePrefixDir("a b/c/").dir == "a%20b~/c~");
  CHECK(EncodePrefixDir("a b/c/").key_prefix == "a b/c/");
}

}  // namespace
}  // namespace portal::objstore::filekey
