// Cross-check of the signatures libcurl computes for our requests against botocore.
//
// lib/s3/sigv4_check_server.py (Debian's /usr/bin/python3 with python3-botocore) listens
// on 127.0.0.1 and recomputes every request's signature with botocore.auth.S3SigV4Auth
// from what arrived on the wire; a mismatch gets 403 SignatureDoesNotMatch, as from S3.
// The test drives an s3:// store through PUT (small and 2 MiB, conditional and not),
// ranged GET, HEAD, DELETE and ListObjectsV2 with a prefix and continuation tokens, then
// reads the server's log: every request must have been checked and found correct. A
// client with a wrong secret must be refused, which shows that the check can fail.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "env/block_on.h"
#include "env/real_env.h"
#include "objstore/object_store.h"
#include "testing/testing.h"

namespace portal::s3 {
namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kAccessKey = "AKIDEXAMPLE";
constexpr const char* kSecretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kRegion = "eu-central-1";

// Null after FAIL (or WARN, with PORTALBD_ALLOW_SKIP=1) when python3-botocore is missing.
class CheckServer {
 public:
  static std::unique_ptr<CheckServer> Start(const std::string& token) {
    std::string out;
    if (testing::RunCommand({kPython, "-c", "import botocore.auth"}, &out) != 0) {
      std::string why = "python3-botocore is not installed (scripts/setup.sh installs it)";
      if (testing::AllowSkip()) {
        WARN("SKIPPED (PORTALBD_ALLOW_SKIP=1): " << why);
      } else {
        FAIL(why << "; set PORTALBD_ALLOW_SKIP=1 to skip");
      }
      return nullptr;
    }
    auto s = std::unique_ptr<CheckServer>(new CheckServer());
    s->port_ = testing::FreeLoopbackPort();
    std::vector<std::string> argv = {
        kPython,        testing::SourceDir() + "/lib/s3/sigv4_check_server.py",
        "--port",       std::to_string(s->port_),
        "--access-key", kAccessKey,
        "--secret-key", kSecretKey,
        "--region",     kRegion,
        "--log",        s->log_path()};
    if (!token.empty()) {
      argv.push_back("--token");
      argv.push_back(token);
    }
    s->process_ = std::make_unique<testing::Subprocess>(argv, s->dir_.Join("server.out"));
    REQUIRE(testing::WaitForPort(s->port_, 20000));
    return s;
  }

  std::string log_path() const { return dir_.Join("requests.log"); }
  std::vector<std::string> LogLines() const {
    std::ifstream in(log_path());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  objstore::StoreOptions StoreOptions(const std::string& secret, const std::string& token) const {
    objstore::StoreOptions o;
    o.s3.emplace();
    o.s3->endpoint = fmt::format("http://127.0.0.1:{}", port_);
    o.s3->allow_http = true;
    o.s3->region = kRegion;
    o.s3->access_key_id = kAccessKey;
    o.s3->secret_access_key = secret;
    o.s3->session_token = token;
    o.s3->list_page_size = 2;  // several pages, so continuation tokens are sent
    return o;
  }

 private:
  CheckServer() = default;
  testing::TempDir dir_;
  uint16_t port_ = 0;
  std::unique_ptr<testing::Subprocess> process_;
};

void ExerciseEveryRequestKind(CheckServer& server, const std::string& token) {
  RealEnv env(RealEnv::Options{2, 4});
  env.Start();
  {
    auto opened =
        objstore::OpenStore("s3://bucket/pre fix", env, server.StoreOptions(kSecretKey, token));
    REQUIRE(opened.ok());
    objstore::ObjectStore& s = **opened;
    const std::string odd = "dir/a b+c=d&e~f%g?h#i.txt";
    REQUIRE(BlockOn(s.CheckAccess()).ok());
    REQUIRE(BlockOn(s.Put(odd, "hello world")).ok());
    // 2 MiB: large enough that curl sends "Expect: 100-continue" (which it does not sign).
    REQUIRE(BlockOn(s.Put("dir/big", std::string(2 << 20, 'b'))).ok());
    REQUIRE(BlockOn(s.PutIfAbsent("dir/once", "1")).ok());
    CHECK(BlockOn(s.PutIfAbsent("dir/once", "2")).IsPreconditionFailed());
    CHECK(*BlockOn(s.Get(odd, objstore::GetRange{6, 5})) == "world");
    CHECK(BlockOn(s.Head(odd))->size == 11);
    for (const char* k : {"dir/x 1", "dir/x+2", "dir/x=3", "other/y"}) {
      REQUIRE(BlockOn(s.Put(k, "v")).ok());
    }
    auto listed = BlockOn(s.List("dir/", "dir/a"));
    REQUIRE(listed.ok());
    std::vector<std::string> keys;
    for (const auto& i : *listed) keys.push_back(i.key);
    CHECK(keys == std::vector<std::string>{"dir/a b+c=d&e~f%g?h#i.txt", "dir/big", "dir/once",
                                           "dir/x 1", "dir/x+2", "dir/x=3"});
    REQUIRE(BlockOn(s.Delete(odd)).ok());
    CHECK(BlockOn(s.Head(odd)).status().IsNotFound());
  }
  env.Stop();

  auto lines = server.LogLines();
  std::map<std::string, int> by_method;
  bool token_sent = false, start_after_sent = false;
  std::set<std::string> connections;  // client ports
  for (const auto& line : lines) {
    INFO(line);
    CHECK(line.starts_with("OK "));
    connections.insert(line.substr(line.rfind(" from=") + 1));
    by_method[line.substr(3, line.find(' ', 3) - 3)]++;
    // botocore was given the decoded token and re-encoded it: '+', '/' and '=' survived.
    if (line.find("continuation-token=tok%2B%2F%3D") != std::string::npos) token_sent = true;
    if (line.find("start-after=pre%20fix%2Fdir%2Fa") != std::string::npos) start_after_sent = true;
  }
  CHECK(by_method["PUT"] == 8);
  CHECK(by_method["GET"] >= 1 + 1 + 3);  // ranged GET, CheckAccess, three list pages
  CHECK(by_method["HEAD"] == 2);
  CHECK(by_method["DELETE"] == 1);
  CHECK(token_sent);
  CHECK(start_after_sent);
  // One request at a time here: curl's connection cache should carry nearly all of them.
  CHECK(lines.size() == 16);
  CHECK(connections.size() <= 2);
}

TEST_CASE("botocore's S3SigV4Auth agrees with every request we sign", "[s3client][sigv4]") {
  auto server = CheckServer::Start("");
  if (!server) return;
  ExerciseEveryRequestKind(*server, "");

  // The check can fail: a wrong secret is refused, and the server logs why.
  RealEnv env(RealEnv::Options{1, 1});
  env.Start();
  {
    auto bad = objstore::OpenStore("s3://bucket", env, server->StoreOptions("wrong", ""));
    REQUIRE(bad.ok());
    Status st = BlockOn((*bad)->Put("k", "v"));
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message().find("SignatureDoesNotMatch") != std::string::npos);
  }
  env.Stop();
  CHECK(server->LogLines().back().starts_with("FAIL PUT /bucket/k: signature mismatch"));
}

TEST_CASE("botocore agrees with requests signed with a session token", "[s3client][sigv4]") {
  const std::string token = "FwoGZXIvYXdzE+token/with=specials";
  auto server = CheckServer::Start(token);
  if (!server) return;
  ExerciseEveryRequestKind(*server, token);
}

}  // namespace
}  // namespace portal::s3
