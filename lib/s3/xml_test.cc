#include "s3/xml.h"

#include <catch2/catch.hpp>

namespace portal::s3 {
namespace {

TEST_CASE("S3 error bodies are parsed, other bodies are not errors", "[s3client]") {
  auto e = ParseErrorBody(
      "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message>"
      "<Key>k</Key></Error>");
  REQUIRE(e.has_value());
  CHECK(e->code == "NoSuchKey");
  CHECK(e->message == "gone");
  CHECK_FALSE(ParseErrorBody("").has_value());
  CHECK_FALSE(ParseErrorBody("<html><body>502 Bad Gateway</body></html>").has_value());
  CHECK_FALSE(ParseErrorBody("not xml at all <").has_value());
}

TEST_CASE("ListObjectsV2 pages are parsed, url-encoded keys decoded", "[s3client]") {
  const char* page =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Name>b</Name><Prefix>p%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
      "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
      "<Contents><Key>p/a+b%2Bc%01</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents>"
      "<Contents><Key>p/z</Key><Size>0</Size><ETag>\"def\"</ETag></Contents>"
      "<NextContinuationToken>1cH+/9=</NextContinuationToken></ListBucketResult>";
  auto r = ParseListObjectsV2(page);
  REQUIRE(r.ok());
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0].key == "p/a b+c\x01");
  CHECK(r->entries[0].size == 12);
  CHECK(r->entries[0].etag == "abc");
  CHECK(r->entries[1].key == "p/z");
  CHECK(r->entries[1].etag == "def");
  CHECK(r->truncated);
  CHECK(r->next_token == "1cH+/9=");
}

TEST_CASE("ListObjectsV2 keys are taken raw when the server ignored encoding-type", "[s3client]") {
  auto r = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>false</IsTruncated>"
      "<Contents><Key>a+b%20c</Key><Size>1</Size><ETag>x</ETag></Contents></ListBucketResult>");
  REQUIRE(r.ok());
  CHECK(r->entries.at(0).key == "a+b%20c");
  CHECK_FALSE(r->truncated);
}

TEST_CASE("malformed ListObjectsV2 pages are Corruption", "[s3client]") {
  auto bad = [](const char* body) { return ParseListObjectsV2(body).status().IsCorruption(); };
  CHECK(bad(""));
  CHECK(bad("<Error><Code>x</Code></Error>"));
  CHECK(
      bad("<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>"
          "</ListBucketResult>"));  // no IsTruncated
  CHECK(bad("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"));  // no token
  CHECK(
      bad("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>"
          "<Size>12x</Size></Contents></ListBucketResult>"));
  CHECK(
      bad("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key></Key>"
          "<Size>1</Size></Contents></ListBucketResult>"));
  CHECK(
      bad("<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false"
          "</IsTruncated><Contents><Key>%zz</Key><Size>1</Size></Contents>"
          "</ListBucketResult>"));
}

}  // namespace
}  // namespace portal::s3
