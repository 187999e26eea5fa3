// How file:// maps object keys to paths under its directory, and back.
//
//   key        = seg *( "/" seg )          split at every '/'; segments may be empty
//   E(seg)     = every byte b of seg becomes
//                  b            if b is A-Z a-z 0-9 '_' '-', or '.' anywhere but first
//                  "%" HH       otherwise (HH: two upper-case hex digits)
//                the empty segment becomes "%" (a lone '%', which E never emits otherwise)
//   name(seg)  = E(seg)          for the last segment: a regular file
//              = E(seg) "~"      for the others: a directory
//   a name longer than kMaxPiece bytes is cut, never inside a "%HH", into pieces of at most
//   kMaxPiece bytes; every piece but the last gets a "+" suffix and is a directory of its
//   own holding the next piece; every piece but the first gets a "+" prefix (a cut may
//   fall just before a '.').
//   path       = name(seg_1) "/" name(seg_2) "/" ... "/" name(seg_n)
//
//   "seg/00000042.seg"  ->  "seg~/00000042.seg"
//   "a b/../c"          ->  "a%20b~/%2E.~/c"
//   "x//"               ->  "x~/%~/%"
//
// Why: every byte value (0x00-0xff), '/', "..", empty segments and keys of up to
// kMaxKeyBytes bytes map to portable names of at most 255 bytes; no name starts with '.',
// so ".", "..", hidden files and the store's ".tmp-*" files can never be a key; '~' and
// '+' never occur inside E(), so a key "a" (file "a") and keys under "a/" (directory
// "a~") coexist. The mapping is a bijection onto canonical paths: DecodeName accepts a
// name only if encoding its result gives the same name back, so foreign files are ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portal::objstore::filekey {

inline constexpr size_t kMaxPiece = 240;

// The relative path of `key` (no leading '/'). key must be non-empty.
std::string EncodeKey(std::string_view key);

// The relative directory holding every key that starts with `prefix`'s complete segments
// (everything up to its last '/'), and those segments with their trailing '/'. For a
// prefix without '/' both are empty (start at the root).
struct PrefixDir {
  std::string dir;
  std::string key_prefix;
};
PrefixDir EncodePrefixDir(std::string_view prefix);

// The kind of directory entry a name denotes.
enum class NameKind { kFile, kDir, kContinued, kForeign };
struct DecodedName {
  NameKind kind = NameKind::kForeign;
  std::string text;  // kContinued: the piece without '+', still encoded; else the segment
};
// Classifies a directory entry name. `pending` is the concatenation of the pieces of the
// continued directories above it (still encoded). Names starting with '.' are kForeign.
DecodedName DecodeName(std::string_view pending, std::string_view name, bool is_dir);

}  // namespace portal::objstore::filekey
