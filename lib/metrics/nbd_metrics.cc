#include "metrics/nbd_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <unordered_map>
#include <utility>

#include "env/env.h"
#include "nbd/protocol.h"
#include "nbd/transmission.h"

namespace portal::metrics {
namespace {

using namespace portal::nbd;  // the spec's NBD_CMD_* names

// Index of each op's series; kOther for command types the table does not name.
constexpr std::array<uint16_t, 7> kNamedTypes = {
    NBD_CMD_READ,         NBD_CMD_WRITE,        NBD_CMD_FLUSH, NBD_CMD_TRIM,
    NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE};
constexpr std::array<const char*, 8> kOpLabels = {"read",         "write",        "flush", "trim",
                                                  "write_zeroes", "block_status", "cache", "other"};
constexpr size_t kOther = kNamedTypes.size();

size_t OpIndex(uint16_t type) {
  for (size_t i = 0; i < kNamedTypes.size(); ++i) {
    if (kNamedTypes[i] == type) return i;
  }
  return kOther;
}

// 50 us to 30 s: a cached READ on loopback to a FLUSH waiting out S3 retries.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
}

}  // namespace

struct NbdMetrics::Families {
  std::shared_ptr<prometheus::Registry> registry;  // owns the families below
  std::string volume;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Counter>& errors;
  prometheus::Family<prometheus::Counter>& bytes;
  prometheus::Family<prometheus::Histogram>& duration;
};

// One connection's series: looked up when the export is opened, not per request.
class NbdMetrics::Observer final : public nbd::RequestObserver {
 public:
  Observer(const Families& f, const std::string& export_name, Env& env,
           std::shared_ptr<nbd::RequestObserver> next, std::shared_ptr<const Families> keep)
      : env_(env), next_(std::move(next)), keep_(std::move(keep)) {
    for (size_t i = 0; i < kOpLabels.size(); ++i) {
      const prometheus::Labels labels = {
          {"volume", f.volume}, {"export", export_name}, {"op", kOpLabels[i]}};
      ops_[i] = {&f.requests.Add(labels), &f.errors.Add(labels), &f.bytes.Add(labels),
                 &f.duration.Add(labels, LatencyBuckets())};
    }
  }

  uint64_t OnRequest(const nbd::RequestHeader& h) override {
    const uint64_t now = env_.NowNanos();
    if (!next_) return now;
    // Both observers need a token and the session carries one: ours becomes a key to
    // both (requests can be pipelined, so one slot would not do). A request never
    // answered (its payload never came) leaves its entry until the connection ends.
    const uint64_t key = next_key_++;
    chained_[key] = {now, next_->OnRequest(h)};
    return key;
  }

  void OnReply(const nbd::RequestHeader& h, uint64_t token, uint32_t nbd_error) override {
    uint64_t start_ns = token;
    uint64_t next_token = 0;
    if (next_) {
      auto it = chained_.find(token);
      if (it == chained_.end()) return;  // not ours: cannot happen, the session pairs them
      start_ns = it->second.first;
      next_token = it->second.second;
      chained_.erase(it);
    }
    const Series& s = ops_[OpIndex(h.type)];
    s.requests->Increment();
    if (nbd_error != 0) {
      s.errors->Increment();
    } else if (h.type == NBD_CMD_READ || h.type == NBD_CMD_WRITE) {
      s.bytes->Increment(static_cast<double>(h.length));
    }
    const uint64_t now = env_.NowNanos();
    s.duration->Observe(static_cast<double>(now > start_ns ? now - start_ns : 0) / 1e9);
    if (next_) next_->OnReply(h, next_token, nbd_error);
  }

 private:
  struct Series {
    prometheus::Counter* requests = nullptr;
    prometheus::Counter* errors = nullptr;
    prometheus::Counter* bytes = nullptr;
    prometheus::Histogram* duration = nullptr;
  };
  Env& env_;
  const std::shared_ptr<nbd::RequestObserver> next_;
  const std::shared_ptr<const Families> keep_;  // the series' owner
  std::array<Series, kOpLabels.size()> ops_{};
  // With a chained observer: our token -> {start, its token}. Only touched from the
  // connection's serialized context.
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> chained_;
  uint64_t next_key_ = 0;
};

class NbdMetrics::Catalog final : public nbd::ExportCatalog {
 public:
  Catalog(std::unique_ptr<nbd::ExportCatalog> inner, NbdMetrics& metrics)
      : inner_(std::move(inner)), metrics_(metrics) {}
  std::vector<nbd::ExportInfo> List() override { return inner_->List(); }
  Result<nbd::ExportInfo> Lookup(std::string_view name) override { return inner_->Lookup(name); }
  Result<std::shared_ptr<nbd::OpenExport>> Open(std::string_view name) override {
    ASSIGN_OR_RETURN(std::shared_ptr<nbd::OpenExport> opened, inner_->Open(name));
    opened->observer = metrics_.ObserverFor(opened->info.name, std::move(opened->observer));
    return opened;
  }

 private:
  std::unique_ptr<nbd::ExportCatalog> inner_;
  NbdMetrics& metrics_;
};

NbdMetrics::NbdMetrics(std::shared_ptr<prometheus::Registry> registry, std::string volume, Env& env)
    : env_(env) {
  auto& requests = prometheus::BuildCounter()
                       .Name("portalbd_nbd_requests_total")
                       .Help("NBD requests answered, by export and op")
                       .Register(*registry);
  auto& errors = prometheus::BuildCounter()
                     .Name("portalbd_nbd_errors_total")
                     .Help("NBD requests answered with an error, by export and op")
                     .Register(*registry);
  auto& bytes = prometheus::BuildCounter()
                    .Name("portalbd_nbd_bytes_total")
                    .Help("Payload bytes of successful NBD READs and WRITEs")
                    .Register(*registry);
  auto& duration = prometheus::BuildHistogram()
                       .Name("portalbd_nbd_request_duration_seconds")
                       .Help("NBD request latency, header read to reply queued")
                       .Register(*registry);
  families_ = std::make_shared<Families>(
      Families{std::move(registry), std::move(volume), requests, errors, bytes, duration});
}

NbdMetrics::~NbdMetrics() = default;

std::unique_ptr<nbd::ExportCatalog> NbdMetrics::Wrap(std::unique_ptr<nbd::ExportCatalog> inner) {
  return std::make_unique<Catalog>(std::move(inner), *this);
}

std::shared_ptr<nbd::RequestObserver> NbdMetrics::ObserverFor(
    const std::string& export_name, std::shared_ptr<nbd::RequestObserver> next) {
  return std::make_shared<Observer>(*families_, export_name, env_, std::move(next), families_);
}

const char* NbdMetrics::OpLabel(uint16_t nbd_type) { return kOpLabels[OpIndex(nbd_type)]; }

}  // namespace portal::metrics
