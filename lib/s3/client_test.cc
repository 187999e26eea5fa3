// The S3 client against fake HTTP layers on SimEnv: request building, retries and backoff
// in simulated time (no test sleeps), error mapping without retries, the concurrency limit.
#include "s3/client.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <deque>

#include "env/block_on.h"
#include "env/sim_env.h"
#include "s3/sha256.h"
#include "testing/fake_http.h"

namespace portal::s3 {
namespace {

using testing::FakeHttp;
using testing::HttpReply;
using testing::S3ErrorXml;

ClientOptions TestOptions() {
  ClientOptions o;
  o.endpoint = "http://127.0.0.1:9000";
  o.allow_http = true;
  o.access_key_id = "AK";
  o.secret_access_key = "SK";
  return o;
}

std::unique_ptr<Client> MakeClient(Env& env, std::shared_ptr<HttpTransport> http,
                                   ClientOptions o = TestOptions()) {
  auto c = Client::Create(env, "bkt", std::move(o), std::move(http));
  REQUIRE(c.ok());
  return std::move(*c);
}

TEST_CASE("requests are built path-style with an endpoint, in canonical form", "[s3client]") {
  SimEnv env;
  auto c = MakeClient(env, std::make_shared<FakeHttp>(nullptr));
  HttpRequest r = c->BuildRequest("GET", "dir/a b+c~.txt", {});
  CHECK(r.url == "http://127.0.0.1:9000/bkt/dir/a%20b%2Bc~.txt");
  CHECK(r.Header("x-amz-content-sha256") == kEmptySha256);
  CHECK(r.Header("x-amz-security-token").empty());
  CHECK(r.sigv4 == "aws:amz:us-east-1:s3");
  CHECK(r.access_key_id == "AK");
  CHECK(r.secret_access_key == "SK");
  QueryString q;
  q.Add("list-type", "2").Add("prefix", "a/");
  CHECK(c->BuildRequest("GET", "", q).url == "http://127.0.0.1:9000/bkt?list-type=2&prefix=a%2F");
}

TEST_CASE("requests are virtual-hosted on AWS, or when asked", "[s3client]") {
  SimEnv env;
  ClientOptions aws = TestOptions();
  aws.endpoint.clear();
  aws.region = "eu-west-1";
  aws.session_token = "TOKEN";
  auto c = MakeClient(env, std::make_shared<FakeHttp>(nullptr), aws);
  HttpRequest r = c->BuildRequest("PUT", "k/../x y", {});
  CHECK(r.url == "https://bkt.s3.eu-west-1.amazonaws.com/k/../x%20y");
  CHECK(r.Header("x-amz-security-token") == "TOKEN");
  CHECK(r.sigv4 == "aws:amz:eu-west-1:s3");
  CHECK(c->BuildRequest("GET", "", {}).url == "https://bkt.s3.eu-west-1.amazonaws.com/");

  ClientOptions vhost = TestOptions();
  vhost.endpoint = "https://minio.example:9000/";
  vhost.path_style = false;
  auto v = MakeClient(env, std::make_shared<FakeHttp>(nullptr), vhost);
  CHECK(v->BuildRequest("GET", "k", {}).url == "https://bkt.minio.example:9000/k");
}

TEST_CASE("bad settings are refused with the variable to fix", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>(nullptr);
  auto make = [&](ClientOptions o) { return Client::Create(env, "bkt", o, fake).status(); };
  ClientOptions o = TestOptions();
  o.allow_http = false;
  CHECK(make(o).message().find("AWS_ALLOW_HTTP") != std::string::npos);
  o = TestOptions();
  o.secret_access_key.clear();
  CHECK(make(o).message().find("AWS_SECRET_ACCESS_KEY") != std::string::npos);
  o = TestOptions();
  o.endpoint = "ftp://x";
  CHECK(make(o).code() == Status::Code::kInvalidArgument);
  o = TestOptions();
  o.endpoint = "::not a url";
  CHECK(make(o).code() == Status::Code::kInvalidArgument);
  o = TestOptions();
  o.ca_file = "/nonexistent/ca.pem";
  Status ca = make(o);
  CHECK(ca.code() == Status::Code::kInvalidArgument);
  CHECK(ca.message().find("CA bundle /nonexistent/ca.pem") != std::string::npos);
  CHECK(ca.message().find("AWS_CA_BUNDLE") != std::string::npos);
}

TEST_CASE("PUT carries the body's SHA-256 and If-None-Match only when conditional", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>([](const HttpRequest&) { return HttpReply(200); });
  auto c = MakeClient(env, fake);
  std::string big(200 * 1024, 'x');  // hashed on the blocking pool
  REQUIRE(RunSim(env, c->PutObject("k", "hello", false)).ok());
  REQUIRE(RunSim(env, c->PutObject("k2", big, true)).ok());
  auto reqs = fake->requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].method == "PUT");
  CHECK(reqs[0].body == "hello");
  CHECK(reqs[0].Header("x-amz-content-sha256") == Sha256Hex("hello"));
  CHECK(reqs[0].Header("if-none-match").empty());
  CHECK(reqs[1].Header("x-amz-content-sha256") == Sha256Hex(big));
  CHECK(reqs[1].Header("if-none-match") == "*");
}

TEST_CASE("PUT in parts: the parts' SHA-256, the parts sent as they are", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>([](const HttpRequest& r) {
    CHECK(r.body.empty());
    CHECK(r.body_parts.size() == 3);
    return HttpReply(200);
  });
  auto c = MakeClient(env, fake);
  const std::string a(100 * 1024, 'a'), b = "hello", d(3, 'd');
  REQUIRE(RunSim(env, c->PutObjectParts("k", {a, b, d}, true)).ok());
  auto reqs = fake->requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].body == a + b + d);  // FakeHttp keeps a copy
  CHECK(reqs[0].Header("x-amz-content-sha256") == Sha256Hex(a + b + d));
  CHECK(Sha256Hex(std::vector<std::string_view>{a, b, d}) == Sha256Hex(a + b + d));
  CHECK(reqs[0].Header("if-none-match") == "*");
}

TEST_CASE("GET sends the range, HEAD reads size and etag", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>([](const HttpRequest& r) {
    if (r.method == "HEAD")
      return HttpReply(200, "", {{"content-length", "42"}, {"etag", "\"e1\""}});
    return HttpReply(206, "abcde", {{"content-range", "bytes 5-9/42"}});
  });
  auto c = MakeClient(env, fake);
  auto got = RunSim(env, c->GetObject("k", ByteRange{5, 9}));
  REQUIRE(got.ok());
  CHECK(got->body == "abcde");
  CHECK(got->partial);
  CHECK(got->range_first == 5u);
  REQUIRE(RunSim(env, c->GetObject("k", ByteRange{5, std::nullopt})).ok());
  auto head = RunSim(env, c->HeadObject("k"));
  REQUIRE(head.ok());
  CHECK(head->size == 42);
  CHECK(head->etag == "e1");
  auto reqs = fake->requests();
  CHECK(reqs[0].Header("range") == "bytes=5-9");
  CHECK(reqs[1].Header("range") == "bytes=5-");
  CHECK(reqs[2].method == "HEAD");
}

TEST_CASE("5xx and SlowDown are retried with backoff in Env time", "[s3client]") {
  SimEnv env;
  int calls = 0;
  auto fake = std::make_shared<FakeHttp>([&](const HttpRequest&) {
    ++calls;
    if (calls == 1) return HttpReply(503, S3ErrorXml("SlowDown"));
    if (calls == 2) return HttpReply(500, S3ErrorXml("InternalError"));
    return HttpReply(200, "data");
  });
  auto c = MakeClient(env, fake);
  uint64_t start = env.NowNanos();
  auto got = RunSim(env, c->GetObject("k", std::nullopt));
  REQUIRE(got.ok());
  CHECK(got->body == "data");
  CHECK(calls == 3);
  CHECK(c->stats().attempts == 3);
  CHECK(c->stats().retries == 2);
  // Equal jitter: attempt 1 waits [50, 100] ms, attempt 2 [100, 200] ms.
  uint64_t waited_ms = (env.NowNanos() - start) / kNanosPerMilli;
  CHECK(waited_ms >= 150);
  CHECK(waited_ms <= 300);
}

TEST_CASE("transport errors are retried, and retries are bounded", "[s3client]") {
  SimEnv env;
  int calls = 0;
  auto fake = std::make_shared<FakeHttp>([&](const HttpRequest&) -> Result<HttpResponse> {
    ++calls;
    if (calls == 1) return Status::Unavailable("GET x: Connection reset by peer");
    return HttpReply(204);
  });
  auto c = MakeClient(env, fake);
  REQUIRE(RunSim(env, c->DeleteObject("k")).ok());
  CHECK(calls == 2);

  calls = 0;
  fake->set_handler([&](const HttpRequest&) {
    ++calls;
    return HttpReply(503, S3ErrorXml("SlowDown"));
  });
  ClientOptions o = TestOptions();
  o.retry.max_attempts = 4;
  auto c4 = MakeClient(env, fake, o);
  Status st = RunSim(env, c4->PutObject("k", "x", false));
  CHECK(st.IsUnavailable());
  CHECK(st.retryable());
  CHECK(calls == 4);
  CHECK(st.message().find("after 4 attempts") != std::string::npos);
  CHECK(st.message().find("SlowDown") != std::string::npos);
}

TEST_CASE("StopRetrying ends a backoff at once, and later requests get one attempt",
          "[s3client]") {
  SimEnv env;
  int calls = 0;
  auto fake = std::make_shared<FakeHttp>([&](const HttpRequest&) -> Result<HttpResponse> {
    ++calls;
    return Status::Unavailable("PUT x: Couldn't connect to server");
  });
  auto c = MakeClient(env, fake);
  std::optional<Status> put;
  Start(c->PutObject("k", "x", false), [&](Status st) { put = std::move(st); });
  env.AdvanceBy(2 * kNanosPerSecond);  // a few attempts; the backoff grows to seconds
  REQUIRE(!put);
  const int before = calls;
  const uint64_t stopped_at = env.NowNanos();
  c->StopRetrying();
  env.RunUntil([&] { return put.has_value(); });
  REQUIRE(put);
  CHECK(env.NowNanos() == stopped_at);
  CHECK(calls == before);
  CHECK(put->retryable());
  CHECK(put->message().find("retries stopped") != std::string::npos);

  calls = 0;
  CHECK(!RunSim(env, c->DeleteObject("k")).ok());
  CHECK(calls == 1);
}

TEST_CASE("4xx answers are final: mapped once, never retried", "[s3client]") {
  struct Case {
    int http;
    const char* code;
    Status::Code want;
  };
  for (const Case& k : {Case{404, "NoSuchKey", Status::Code::kNotFound},
                        Case{403, "AccessDenied", Status::Code::kPermissionDenied},
                        Case{412, "PreconditionFailed", Status::Code::kPreconditionFailed},
                        Case{400, "InvalidRequest", Status::Code::kInvalidArgument},
                        Case{416, "InvalidRange", Status::Code::kInvalidArgument},
                        Case{501, "NotImplemented", Status::Code::kNotSupported}}) {
    INFO(k.http << " " << k.code);
    SimEnv env;
    auto fake = std::make_shared<FakeHttp>(
        [&](const HttpRequest&) { return HttpReply(k.http, S3ErrorXml(k.code)); });
    auto c = MakeClient(env, fake);
    CHECK(RunSim(env, c->GetObject("k", std::nullopt)).status().code() == k.want);
    CHECK(fake->count() == 1);
    CHECK(env.NowNanos() == 0);  // no backoff happened
  }
}

TEST_CASE("429, 408, RequestTimeout and ConditionalRequestConflict are retried", "[s3client]") {
  for (auto [http, code] :
       {std::pair{429, "SlowDown"}, std::pair{408, "RequestTimeout"},
        std::pair{400, "RequestTimeout"}, std::pair{409, "ConditionalRequestConflict"}}) {
    INFO(http << " " << code);
    SimEnv env;
    int calls = 0;
    auto fake = std::make_shared<FakeHttp>([&](const HttpRequest&) {
      return ++calls == 1 ? HttpReply(http, S3ErrorXml(code)) : HttpReply(200);
    });
    auto c = MakeClient(env, fake);
    CHECK(RunSim(env, c->PutObject("k", "v", true)).ok());
    CHECK(calls == 2);
  }
}

TEST_CASE("DELETE of a missing key is OK, of a missing bucket is not", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>(
      [](const HttpRequest&) { return HttpReply(404, S3ErrorXml("NoSuchKey")); });
  auto c = MakeClient(env, fake);
  CHECK(RunSim(env, c->DeleteObject("k")).ok());
  fake->set_handler([](const HttpRequest&) { return HttpReply(404, S3ErrorXml("NoSuchBucket")); });
  CHECK(RunSim(env, c->DeleteObject("k")).IsNotFound());
}

TEST_CASE("ListObjectsV2 sends canonical queries with the continuation token", "[s3client]") {
  SimEnv env;
  auto fake = std::make_shared<FakeHttp>([](const HttpRequest&) {
    return HttpReply(200,
                     "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>p/a</Key>"
                     "<Size>1</Size><ETag>\"e\"</ETag></Contents>"
                     "<NextContinuationToken>t+1/=</NextContinuationToken></ListBucketResult>");
  });
  auto c = MakeClient(env, fake);
  ListRequest req{"p/", "p/0 0", "", 1000};
  auto page = RunSim(env, c->ListObjectsV2(req));
  REQUIRE(page.ok());
  CHECK(page->next_token == "t+1/=");
  req.continuation_token = page->next_token;
  req.start_after.clear();
  REQUIRE(RunSim(env, c->ListObjectsV2(req)).ok());
  auto reqs = fake->requests();
  CHECK(reqs[0].url ==
        "http://127.0.0.1:9000/bkt?encoding-type=url&list-type=2&max-keys=1000&prefix=p%2F"
        "&start-after=p%2F0%200");
  CHECK(reqs[1].url ==
        "http://127.0.0.1:9000/bkt?continuation-token=t%2B1%2F%3D&encoding-type=url"
        "&list-type=2&max-keys=1000&prefix=p%2F");
}

// A transport that holds every request until the test lets it go.
class GatedHttp final : public HttpTransport {
 public:
  explicit GatedHttp(Env& env) : env_(env) {}
  Task<Result<HttpResponse>> Send(const HttpRequest&) override {
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    struct Gate {
      GatedHttp* self;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { self->held_.push_back(h); }
      void await_resume() const noexcept {}
    };
    co_await Gate{this};
    --in_flight_;
    co_return HttpReply(204);
  }
  void ReleaseOne() {
    auto h = held_.front();
    held_.pop_front();
    env_.Post([h] { h.resume(); });
  }
  size_t held() const { return held_.size(); }
  int max_in_flight() const { return max_in_flight_; }

 private:
  Env& env_;
  std::deque<std::coroutine_handle<>> held_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
};

TEST_CASE("no more than max_concurrent_requests are in flight", "[s3client]") {
  SimEnv env;
  auto gated = std::make_shared<GatedHttp>(env);
  ClientOptions o = TestOptions();
  o.max_concurrent_requests = 2;
  auto c = MakeClient(env, gated, o);
  int done = 0;
  for (int i = 0; i < 5; ++i) {
    Start(c->DeleteObject(fmt::format("k{}", i)), [&](Status s) {
      CHECK(s.ok());
      ++done;
    });
  }
  env.RunUntilIdle();
  CHECK(gated->held() == 2);
  while (gated->held() > 0) {
    gated->ReleaseOne();
    env.RunUntilIdle();
  }
  CHECK(done == 5);
  CHECK(gated->max_in_flight() == 2);
}

}  // namespace
}  // namespace portal::s3
