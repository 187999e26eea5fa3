// TLS credentials: PSK file parsing and the start-up checks that need no certificate
// (the interop suite tests/interop/test_tls.py makes real ones with openssl).
#include "nbd/tls.h"

#include <catch2/catch.hpp>

namespace portal::nbd {
namespace {

TEST_CASE("PSK files: psktool's identity:hexkey lines", "[nbd][tls]") {
  auto keys = ParsePskFile("alice:00ff10\r\n\nbob:AB\n");
  REQUIRE(keys.ok());
  CHECK(keys->size() == 2);
  CHECK(keys->at("alice") == std::string("\x00\xff\x10", 3));
  CHECK(keys->at("bob") == "\xab");
  // The last colon splits: identities may hold colons (qemu's "user:name" habits).
  CHECK(ParsePskFile("a:b:0102")->at("a:b") == "\x01\x02");
  CHECK(ParsePskFile("")->empty());
}

TEST_CASE("PSK files: bad lines are errors naming the line", "[nbd][tls]") {
  auto check_bad = [](std::string_view text, std::string_view needle) {
    auto r = ParsePskFile(text);
    REQUIRE(!r.ok());
    CHECK_THAT(std::string(r.status().message()), Catch::Contains(std::string(needle)));
  };
  check_bad("alice:00\nbob\n", "line 2");
  check_bad(":00ff", "line 1");
  check_bad("alice:0g", "hexadecimal");
  check_bad("alice:abc", "hex");
  check_bad("alice:", "hex");
  check_bad("alice:00\nalice:01\n", "twice");
  check_bad(std::string(129, 'i') + ":00", "identity longer");
  check_bad("alice:" + std::string(130, 'a'), "1 to 64 bytes");
}

TEST_CASE("TLS credentials: what is missing is said at start", "[nbd][tls]") {
  auto message = [](std::string cert, std::string key, std::string ca, std::string psk) {
    TlsOptions o;
    o.cert_file = cert;
    o.key_file = key;
    o.ca_file = ca;
    o.psk_file = psk;
    auto r = TlsContext::CreateServer(o);
    REQUIRE(!r.ok());
    return std::string(r.status().message());
  };
  CHECK_THAT(message("", "", "", ""), Catch::Contains("tls_cert and tls_key, or tls_psk_file"));
  CHECK_THAT(message("", "/k", "", ""), Catch::Contains("tls_key is set without tls_cert"));
  CHECK_THAT(message("/c", "", "", ""), Catch::Contains("tls_cert is set without tls_key"));
  CHECK_THAT(message("", "", "/ca", "/p"), Catch::Contains("tls_ca needs"));
  CHECK_THAT(message("/c", "/k", "", "/p"), Catch::Contains("exclude each other"));
  CHECK_THAT(message("/nonexistent/c.pem", "/k", "", ""),
             Catch::Contains("tls_cert /nonexistent/c.pem: No such file or directory"));
  CHECK_THAT(message("", "", "", "/nonexistent/k.psk"),
             Catch::Contains("tls_psk_file /nonexistent/k.psk: No such file"));
}

}  // namespace
}  // namespace portal::nbd
