// NbdMetrics: requests, errors, bytes and latency by export and op, and an observer it
// chains to (the [record] trace) still sees its own tokens under pipelining.
#include "metrics/nbd_metrics.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <catch2/catch.hpp>
#include <map>

#include "env/sim_env.h"
#include "nbd/protocol.h"
#include "nbd/transmission.h"

namespace portal::metrics {
namespace {

std::string Scrape(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

nbd::RequestHeader Req(uint16_t type, uint32_t length) {
  nbd::RequestHeader h;
  h.type = type;
  h.length = length;
  return h;
}

class TokenObserver final : public nbd::RequestObserver {
 public:
  uint64_t OnRequest(const nbd::RequestHeader& h) override { return 1000 + h.cookie; }
  void OnReply(const nbd::RequestHeader& h, uint64_t token, uint32_t) override {
    tokens[h.cookie] = token;
  }
  std::map<uint64_t, uint64_t> tokens;
};

TEST_CASE("NbdMetrics counts requests, errors, bytes and latency by export and op", "[metrics]") {
  SimEnv env;
  auto registry = std::make_shared<prometheus::Registry>();
  NbdMetrics m(registry, "vol", env);
  auto obs = m.ObserverFor("portalbd", nullptr);

  const auto w = Req(nbd::NBD_CMD_WRITE, 4096);
  uint64_t t = obs->OnRequest(w);
  env.AdvanceBy(2'000'000);  // 2 ms
  obs->OnReply(w, t, 0);
  const auto r = Req(nbd::NBD_CMD_READ, 512);
  t = obs->OnRequest(r);
  obs->OnReply(r, t, 5);  // NBD_EIO: an error, no bytes
  const auto f = Req(nbd::NBD_CMD_FLUSH, 0);
  obs->OnReply(f, obs->OnRequest(f), 0);

  const std::string text = Scrape(*registry);
  const std::string w_labels = R"({export="portalbd",op="write",volume="vol"})";
  const std::string r_labels = R"({export="portalbd",op="read",volume="vol"})";
  CHECK(Has(text, "portalbd_nbd_requests_total" + w_labels + " 1"));
  CHECK(Has(text, "portalbd_nbd_bytes_total" + w_labels + " 4096"));
  CHECK(Has(text, "portalbd_nbd_errors_total" + w_labels + " 0"));
  CHECK(Has(text, "portalbd_nbd_requests_total" + r_labels + " 1"));
  CHECK(Has(text, "portalbd_nbd_errors_total" + r_labels + " 1"));
  CHECK(Has(text, "portalbd_nbd_bytes_total" + r_labels + " 0"));
  CHECK(Has(text, "portalbd_nbd_request_duration_seconds_sum" + w_labels + " 0.002"));
  CHECK(Has(
      text,
      R"(portalbd_nbd_request_duration_seconds_bucket{export="portalbd",op="write",volume="vol",le="0.001"} 0)"));
  CHECK(Has(
      text,
      R"(portalbd_nbd_request_duration_seconds_bucket{export="portalbd",op="write",volume="vol",le="0.0025"} 1)"));
  CHECK(Has(
      text,
      R"(portalbd_nbd_request_duration_seconds_count{export="portalbd",op="flush",volume="vol"} 1)"));
}

TEST_CASE("NbdMetrics hands a chained observer its own tokens, pipelined", "[metrics]") {
  SimEnv env;
  auto registry = std::make_shared<prometheus::Registry>();
  NbdMetrics m(registry, "vol", env);
  auto inner = std::make_shared<TokenObserver>();
  auto obs = m.ObserverFor("portalbd", inner);
  auto a = Req(nbd::NBD_CMD_WRITE, 512);
  a.cookie = 1;
  auto b = Req(nbd::NBD_CMD_READ, 512);
  b.cookie = 2;
  const uint64_t ta = obs->OnRequest(a);
  const uint64_t tb = obs->OnRequest(b);
  obs->OnReply(b, tb, 0);  // answered out of order
  obs->OnReply(a, ta, 0);
  CHECK(inner->tokens == std::map<uint64_t, uint64_t>{{1, 1001}, {2, 1002}});
  CHECK(Has(Scrape(*registry),
            R"(portalbd_nbd_requests_total{export="portalbd",op="read",volume="vol"} 1)"));
}

TEST_CASE("NbdMetrics op labels", "[metrics]") {
  CHECK(std::string(NbdMetrics::OpLabel(nbd::NBD_CMD_WRITE_ZEROES)) == "write_zeroes");
  CHECK(std::string(NbdMetrics::OpLabel(nbd::NBD_CMD_BLOCK_STATUS)) == "block_status");
  CHECK(std::string(NbdMetrics::OpLabel(99)) == "other");
}

}  // namespace
}  // namespace portal::metrics
