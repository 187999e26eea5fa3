#include "s3/uri.h"

#include <catch2/catch.hpp>

#include "s3/sha256.h"

namespace portal::s3 {
namespace {

TEST_CASE("UriEncode keeps only unreserved bytes, and '/' in paths", "[s3client]") {
  CHECK(UriEncode("AZaz09-_.~", true) == "AZaz09-_.~");
  CHECK(UriEncode("a b+c=d&e/f", true) == "a%20b%2Bc%3Dd%26e%2Ff");
  CHECK(UriEncode("a b+c=d&e/f", false) == "a%20b%2Bc%3Dd%26e/f");
  CHECK(UriEncode("%2F", true) == "%252F");
  CHECK(UriEncode(std::string("\x00\x7f\x80\xff", 4), true) == "%00%7F%80%FF");
  CHECK(UriEncode("\xc3\xa9", true) == "%C3%A9");  // UTF-8 bytes, upper-case hex
}

TEST_CASE("UriDecode inverts UriEncode and handles form-encoded '+'", "[s3client]") {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  CHECK(UriDecode(UriEncode(all, true), false) == all);
  CHECK(UriDecode("a+b%2Bc", true) == "a b+c");
  CHECK(UriDecode("a+b", false) == "a+b");
  CHECK(UriDecode("%2f%2F", false) == "//");
  CHECK_FALSE(UriDecode("%2", false).has_value());
  CHECK_FALSE(UriDecode("%zz", false).has_value());
}

TEST_CASE("QueryString is canonical: sorted, encoded, empty values as name=", "[s3client]") {
  QueryString q;
  q.Add("prefix", "a/b c")
      .Add("list-type", "2")
      .Add("continuation-token", "1cH+/9bT=")
      .Add("uploads");
  CHECK(q.Build() == "continuation-token=1cH%2B%2F9bT%3D&list-type=2&prefix=a%2Fb%20c&uploads=");
  CHECK(QueryString().Build().empty());
  CHECK(QueryString().empty());
}

TEST_CASE("Sha256Hex matches known vectors", "[s3client]") {
  CHECK(Sha256Hex("") == kEmptySha256);
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace portal::s3
