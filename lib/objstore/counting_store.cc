#include "objstore/counting_store.h"

#include <fmt/format.h>

namespace portal::objstore {

OpStats StoreStats::Total() const {
  OpStats t;
  for (const auto& s : ops) {
    t.calls += s.calls;
    t.errors += s.errors;
    t.bytes += s.bytes;
  }
  return t;
}

StoreStats StoreStats::Since(const StoreStats& earlier) const {
  StoreStats d;
  for (size_t i = 0; i < kNumOpKinds; ++i) {
    d.ops[i].calls = ops[i].calls - earlier.ops[i].calls;
    d.ops[i].errors = ops[i].errors - earlier.ops[i].errors;
    d.ops[i].bytes = ops[i].bytes - earlier.ops[i].bytes;
  }
  return d;
}

std::string StoreStats::ToString() const {
  std::string out;
  for (size_t i = 0; i < kNumOpKinds; ++i) {
    if (ops[i].calls == 0) continue;
    if (!out.empty()) out += ' ';
    out += fmt::format("{} calls={} errors={} bytes={}", OpKindName(static_cast<OpKind>(i)),
                       ops[i].calls, ops[i].errors, ops[i].bytes);
  }
  return out;
}

CountingStore::CountingStore(std::unique_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

void CountingStore::Record(OpKind kind, bool ok, uint64_t bytes) {
  auto& c = counters_[static_cast<size_t>(kind)];
  c.calls.fetch_add(1, std::memory_order_relaxed);
  if (!ok) c.errors.fetch_add(1, std::memory_order_relaxed);
  c.bytes.fetch_add(bytes, std::memory_order_relaxed);
}

StoreStats CountingStore::stats() const {
  StoreStats s;
  for (size_t i = 0; i < kNumOpKinds; ++i) {
    s.ops[i].calls = counters_[i].calls.load(std::memory_order_relaxed);
    s.ops[i].errors = counters_[i].errors.load(std::memory_order_relaxed);
    s.ops[i].bytes = counters_[i].bytes.load(std::memory_order_relaxed);
  }
  return s;
}

Task<Result<std::string>> CountingStore::Get(std::string key, std::optional<GetRange> range) {
  auto r = co_await inner_->Get(std::move(key), range);
  Record(OpKind::kGet, r.ok(), r.ok() ? r->size() : 0);
  co_return r;
}

Task<Result<ObjectInfo>> CountingStore::Head(std::string key) {
  auto r = co_await inner_->Head(std::move(key));
  Record(OpKind::kHead, r.ok(), 0);
  co_return r;
}

Task<Status> CountingStore::Put(std::string key, std::string data) {
  uint64_t n = data.size();
  Status s = co_await inner_->Put(std::move(key), std::move(data));
  Record(OpKind::kPut, s.ok(), s.ok() ? n : 0);
  co_return s;
}

Task<Status> CountingStore::PutIfAbsent(std::string key, std::string data) {
  uint64_t n = data.size();
  Status s = co_await inner_->PutIfAbsent(std::move(key), std::move(data));
  Record(OpKind::kPutIfAbsent, s.ok(), s.ok() ? n : 0);
  co_return s;
}

Task<Status> CountingStore::PutIfAbsentRope(std::string key, Rope data) {
  uint64_t n = data.size();
  Status s = co_await inner_->PutIfAbsentRope(std::move(key), std::move(data));
  Record(OpKind::kPutIfAbsent, s.ok(), s.ok() ? n : 0);
  co_return s;
}

Task<Status> CountingStore::Delete(std::string key) {
  Status s = co_await inner_->Delete(std::move(key));
  Record(OpKind::kDelete, s.ok(), 0);
  co_return s;
}

Task<Result<std::vector<ObjectInfo>>> CountingStore::List(std::string prefix,
                                                          std::string start_after) {
  auto r = co_await inner_->List(std::move(prefix), std::move(start_after));
  Record(OpKind::kList, r.ok(), r.ok() ? r->size() : 0);
  co_return r;
}

Task<Status> CountingStore::CheckAccess() {
  Status s = co_await inner_->CheckAccess();
  Record(OpKind::kCheckAccess, s.ok(), 0);
  co_return s;
}

}  // namespace portal::objstore
