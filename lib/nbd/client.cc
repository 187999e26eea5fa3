#include "nbd/client.h"

#include <charconv>
#include <cstring>
#include <deque>
#include <unordered_map>

#include <asio/bind_executor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "env/async.h"
#include "nbd/protocol.h"
#include "nbd/reply_reader.h"
#include "nbd/listener.h"
#include "nbd/transmission.h"

namespace portal::nbd {

using Socket = asio::generic::stream_protocol::socket;

// --- URIs ---

Result<NbdUri> ParseNbdUri(std::string_view uri) {
  NbdUri out;
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("bad NBD URI '{}': {}", uri, why));
  };
  if (uri.starts_with("nbd+unix://")) {
    std::string_view rest = uri.substr(11);
    size_t q = rest.find('?');
    if (q == std::string_view::npos) return bad("nbd+unix needs ?socket=PATH");
    std::string_view path = rest.substr(0, q);
    if (!path.starts_with("/")) return bad("expected nbd+unix:///EXPORT?socket=PATH");
    out.export_name = std::string(path.substr(1));
    std::string_view query = rest.substr(q + 1);
    for (size_t pos = 0; pos <= query.size();) {
      size_t amp = query.find('&', pos);
      std::string_view kv = query.substr(pos, amp == std::string_view::npos ? query.npos
                                                                            : amp - pos);
      if (kv.starts_with("socket=")) out.address = "unix:" + std::string(kv.substr(7));
      if (amp == std::string_view::npos) break;
      pos = amp + 1;
    }
    if (out.address.size() <= 5) return bad("missing socket=PATH");
    return out;
  }
  if (!uri.starts_with("nbd://")) return bad("expected nbd:// or nbd+unix://");
  std::string_view rest = uri.substr(6);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.export_name = std::string(rest.substr(slash + 1));
  if (authority.empty()) return bad("missing host");
  // [v6]:port, host:port or host.
  size_t colon = authority.rfind(':');
  bool has_port = colon != std::string_view::npos &&
                  (authority.front() != '[' || authority.find(']') < colon);
  out.address = has_port ? std::string(authority) : std::string(authority) + ":10809";
  return out;
}

// --- requests in flight ---

namespace {

struct Pending {
  RequestHeader h;
  std::span<uint8_t> read_out;
  std::vector<device::StatusExtent>* extents = nullptr;
  uint32_t error = 0;
  std::string message;
  std::shared_ptr<Oneshot<Status>> done;
};

struct Out {
  uint8_t header[kRequestHeaderSize];
  std::span<const uint8_t> payload;
};

}  // namespace

struct Client::Impl final : public ReplyReader::Handler, public std::enable_shared_from_this<Impl> {
  Impl(RealEnv& e, Socket s, ClientNegotiated neg, uint32_t max_inflight)
      : env(e),
        strand(asio::make_strand(e.io_context())),
        socket(std::move(s)),
        n(neg),
        slots(e, max_inflight),
        max_slots(max_inflight),
        reader(*this, neg.structured_replies),
        rbuf(256 * 1024) {}

  RealEnv& env;
  asio::strand<asio::io_context::executor_type> strand;
  Socket socket;
  const ClientNegotiated n;
  AsyncSemaphore slots;
  const uint32_t max_slots;
  // Strand only:
  ReplyReader reader;
  std::vector<uint8_t> rbuf;
  std::unordered_map<uint64_t, Pending*> pending;
  std::deque<Out> queue;
  size_t writing = 0;  // queue entries being written
  std::vector<asio::const_buffer> wbufs;
  uint64_t next_cookie = 1;
  Status failed;
  bool closed = false;
  std::shared_ptr<Oneshot<Status>> close_done;  // Close() waits for DISC to be written

  // Checks a request against what the server announced; 0 or the reason.
  Status Validate(const RequestHeader& h) const {
    auto need = [&](uint16_t flag, const char* what) -> Status {
      if (n.transmission_flags & flag) return Status::Ok();
      return Status::NotSupported(fmt::format("the server does not support {}", what));
    };
    bool writes = h.type == NBD_CMD_WRITE || h.type == NBD_CMD_TRIM ||
                  h.type == NBD_CMD_WRITE_ZEROES;
    if (writes && (n.transmission_flags & NBD_FLAG_READ_ONLY)) {
      return Status::PermissionDenied("the export is read-only");
    }
    if (h.flags & NBD_CMD_FLAG_FUA) RETURN_IF_ERROR(need(NBD_FLAG_SEND_FUA, "FUA"));
    if (h.flags & NBD_CMD_FLAG_DF) RETURN_IF_ERROR(need(NBD_FLAG_SEND_DF, "DF"));
    if (h.flags & NBD_CMD_FLAG_FAST_ZERO) RETURN_IF_ERROR(need(NBD_FLAG_SEND_FAST_ZERO, "FAST_ZERO"));
    switch (h.type) {
      case NBD_CMD_FLUSH: return need(NBD_FLAG_SEND_FLUSH, "FLUSH");
      case NBD_CMD_TRIM: RETURN_IF_ERROR(need(NBD_FLAG_SEND_TRIM, "TRIM")); break;
      case NBD_CMD_WRITE_ZEROES:
        RETURN_IF_ERROR(need(NBD_FLAG_SEND_WRITE_ZEROES, "WRITE_ZEROES"));
        break;
      case NBD_CMD_CACHE: RETURN_IF_ERROR(need(NBD_FLAG_SEND_CACHE, "CACHE")); break;
      case NBD_CMD_BLOCK_STATUS:
        if (!n.base_allocation) {
          return Status::NotSupported("base:allocation was not negotiated");
        }
        break;
      default: break;
    }
    if ((h.type == NBD_CMD_READ || h.type == NBD_CMD_WRITE) && h.length > n.max_payload) {
      return Status::InvalidArgument(fmt::format("{} of {} bytes exceeds the server's maximum "
                                                 "payload {}", CommandName(h.type), h.length,
                                                 n.max_payload));
    }
    if (h.offset > n.size_bytes || h.length > n.size_bytes - h.offset) {
      return Status::InvalidArgument(fmt::format("{} of [{}, +{}) beyond the export's {} bytes",
                                                 CommandName(h.type), h.offset, h.length,
                                                 n.size_bytes));
    }
    return Status::Ok();
  }

  Task<Status> Call(Pending* p, std::span<const uint8_t> payload) {
    CO_RETURN_IF_ERROR(Validate(p->h));
    auto permit = co_await slots.Acquire();
    p->done = std::make_shared<Oneshot<Status>>(env);
    asio::post(strand, [self = shared_from_this(), p, payload] { self->Start(p, payload); });
    Status st = co_await p->done->Wait();
    co_return st;
  }

  void Start(Pending* p, std::span<const uint8_t> payload) {
    if (closed) {
      p->done->Set(Status::Shutdown("the NBD client is closed"));
      return;
    }
    if (!failed.ok()) {
      p->done->Set(failed);
      return;
    }
    p->h.cookie = next_cookie++;
    pending[p->h.cookie] = p;
    Out& o = queue.emplace_back();
    EncodeRequestHeader(p->h, o.header);
    o.payload = payload;
    PumpWrite();
  }

  void PumpWrite() {
    if (writing > 0 || queue.empty() || !failed.ok()) return;
    wbufs.clear();
    size_t n_out = std::min<size_t>(queue.size(), 64);
    for (size_t i = 0; i < n_out; ++i) {
      wbufs.emplace_back(queue[i].header, kRequestHeaderSize);
      if (!queue[i].payload.empty()) {
        wbufs.emplace_back(queue[i].payload.data(), queue[i].payload.size());
      }
    }
    writing = n_out;
    asio::async_write(socket, wbufs,
                      asio::bind_executor(strand, [self = shared_from_this()](
                                                      const std::error_code& ec, size_t) {
                        for (size_t i = 0; i < self->writing; ++i) self->queue.pop_front();
                        self->writing = 0;
                        if (ec) {
                          self->Fail(Status::IOError("writing to the NBD server: " + ec.message()));
                        } else {
                          self->PumpWrite();
                        }
                        if (self->close_done && self->queue.empty()) {  // DISC is out
                          self->Fail(Status::Shutdown("the NBD client is closed"));
                          std::exchange(self->close_done, nullptr)
                              ->Set(ec ? Status::IOError("sending DISC: " + ec.message())
                                       : Status::Ok());
                        }
                        self->CompleteIfFailed();
                      }));
  }

  void ReadLoop() {
    socket.async_read_some(
        asio::buffer(rbuf.data(), rbuf.size()),
        asio::bind_executor(strand, [self = shared_from_this()](const std::error_code& ec,
                                                                size_t n_read) {
          if (ec && self->closed) {  // after DISC the server hangs up
            self->Fail(Status::Shutdown("the NBD client is closed"));
            self->CompleteIfFailed();
            return;
          }
          if (ec) {
            self->Fail(Status::IOError(ec == asio::error::eof
                                           ? std::string("the NBD server closed the connection")
                                           : "reading from the NBD server: " + ec.message()));
            self->CompleteIfFailed();
            return;
          }
          auto used = self->reader.Consume(std::span<const uint8_t>(self->rbuf.data(), n_read));
          if (!used.ok()) {
            self->Fail(Status::IOError("NBD server broke the protocol: " +
                                       used.status().message()));
            self->CompleteIfFailed();
            return;
          }
          self->ReadLoop();
        }));
  }

  void Fail(Status s) {
    if (failed.ok()) failed = std::move(s);
    std::error_code ignored;
    socket.shutdown(asio::socket_base::shutdown_both, ignored);
    socket.close(ignored);
  }

  // After a failure, requests complete once no write still uses their buffers.
  void CompleteIfFailed() {
    if (failed.ok() || writing > 0) return;
    queue.clear();
    if (close_done) {
      bool clean = failed.code() == Status::Code::kShutdown;
      std::exchange(close_done, nullptr)->Set(clean ? Status::Ok() : failed);
    }
    auto all = std::move(pending);
    pending.clear();
    for (auto& [cookie, p] : all) p->done->Set(failed);
  }

  Pending* Find(uint64_t cookie) {
    auto it = pending.find(cookie);
    return it == pending.end() ? nullptr : it->second;
  }

  // ReplyReader::Handler
  Result<uint32_t> SimpleReplyDataLength(uint64_t cookie) override {
    Pending* p = Find(cookie);
    if (!p) return Status::Corruption(fmt::format("reply for unknown cookie {}", cookie));
    return p->h.type == NBD_CMD_READ ? p->h.length : 0;
  }
  // Where [offset, +len) of a reply lands in p's buffer, or null if it does not fit.
  uint8_t* Place(Pending* p, bool absolute, uint64_t offset, size_t len) {
    uint64_t rel = offset;
    if (absolute) {
      if (offset < p->h.offset) return nullptr;
      rel = offset - p->h.offset;
    }
    if (rel > p->read_out.size() || len > p->read_out.size() - rel) return nullptr;
    return p->read_out.data() + rel;
  }
  void OnData(uint64_t cookie, bool absolute, uint64_t offset,
              std::span<const uint8_t> bytes) override {
    Pending* p = Find(cookie);
    if (!p || p->read_out.empty()) return;
    if (uint8_t* dst = Place(p, absolute, offset, bytes.size())) {
      std::memcpy(dst, bytes.data(), bytes.size());
    } else {
      p->error = NBD_EIO;
      p->message = "the server sent data outside the request";
    }
  }
  void OnHole(uint64_t cookie, uint64_t offset, uint32_t length) override {
    Pending* p = Find(cookie);
    if (!p || p->read_out.empty()) return;
    if (uint8_t* dst = Place(p, true, offset, length)) {
      std::memset(dst, 0, length);
    } else {
      p->error = NBD_EIO;
      p->message = "the server sent a hole outside the request";
    }
  }
  void OnExtent(uint64_t cookie, uint32_t context_id, uint32_t length, uint32_t flags) override {
    Pending* p = Find(cookie);
    if (!p || !p->extents || context_id != n.base_allocation_id) return;
    p->extents->push_back(device::StatusExtent{length, (flags & NBD_STATE_HOLE) != 0,
                                               (flags & NBD_STATE_ZERO) != 0});
  }
  void OnError(uint64_t cookie, uint32_t error, std::string_view message) override {
    Pending* p = Find(cookie);
    if (!p) return;
    p->error = error != 0 ? error : NBD_EIO;
    p->message = std::string(message);
  }
  void OnDone(uint64_t cookie) override {
    auto it = pending.find(cookie);
    if (it == pending.end()) return;
    Pending* p = it->second;
    pending.erase(it);
    p->done->Set(StatusFromNbdError(p->error, p->message));
  }
};

namespace {

Result<Socket> ConnectBlocking(asio::io_context& io, const std::string& address) {
  auto endpoint = ResolveEndpoint(io, address);
  if (!endpoint.ok()) return endpoint.status();
  Socket socket(io);
  std::error_code ec;
  socket.connect(*endpoint, ec);
  if (!ec && endpoint->protocol().family() != AF_UNIX) {
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
  }
  if (ec) return Status::IOError("cannot connect to " + address + ": " + ec.message());
  return socket;
}

Result<ClientNegotiated> HandshakeBlocking(Socket& socket, const Client::Options& options,
                                           const std::string& address) {
  ClientHandshake hs({options.export_name, options.structured_replies, options.base_allocation});
  std::vector<uint8_t> buf(64 * 1024);
  std::string out;
  std::error_code ec;
  while (hs.state() == ClientHandshake::State::kNegotiating) {
    size_t n = socket.read_some(asio::buffer(buf), ec);
    if (ec) {
      return Status::IOError(fmt::format("handshake with {}: {}", address,
                                         ec == asio::error::eof ? "the server closed the connection"
                                                                : ec.message()));
    }
    size_t used = hs.Consume(std::span<const uint8_t>(buf.data(), n), &out);
    if (used < n && hs.state() == ClientHandshake::State::kDone) {
      return Status::IOError("the server sent data before the first request");
    }
    if (!out.empty()) {
      asio::write(socket, asio::buffer(out), ec);
      if (ec) return Status::IOError("handshake with " + address + ": " + ec.message());
      out.clear();
    }
  }
  if (hs.state() == ClientHandshake::State::kFailed) {
    return hs.error().WithContext("handshake with " + address);
  }
  return hs.negotiated();
}

}  // namespace

Task<Result<std::unique_ptr<Client>>> Client::Connect(RealEnv& env, Options options) {
  struct Connected {
    Status status;
    std::optional<Socket> socket;
    ClientNegotiated n;
  };
  Connected c = co_await RunBlocking(env, [&env, &options]() {
    Connected r;
    auto s = ConnectBlocking(env.io_context(), options.address);
    if (!s.ok()) {
      r.status = s.status();
      return r;
    }
    auto n = HandshakeBlocking(*s, options, options.address);
    if (!n.ok()) {
      r.status = n.status();
      return r;
    }
    r.socket.emplace(std::move(*s));
    r.n = *n;
    return r;
  });
  if (!c.status.ok()) co_return c.status;
  auto impl = std::make_shared<Impl>(env, std::move(*c.socket), c.n, options.max_inflight);
  asio::post(impl->strand, [impl] { impl->ReadLoop(); });
  co_return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  asio::post(impl_->strand, [impl = impl_] {
    impl->closed = true;
    impl->Fail(Status::Shutdown("the NBD client is closed"));
    impl->CompleteIfFailed();
  });
}

const ClientNegotiated& Client::negotiated() const { return impl_->n; }

Task<Status> Client::Read(uint64_t offset, std::span<uint8_t> out, uint16_t flags) {
  Pending p;
  p.h = {flags, NBD_CMD_READ, 0, offset, static_cast<uint32_t>(out.size())};
  if (out.size() > UINT32_MAX) co_return Status::InvalidArgument("read too large");
  p.read_out = out;
  co_return co_await impl_->Call(&p, {});
}

Task<Status> Client::Write(uint64_t offset, std::span<const uint8_t> data, uint16_t flags) {
  Pending p;
  if (data.size() > UINT32_MAX) co_return Status::InvalidArgument("write too large");
  p.h = {flags, NBD_CMD_WRITE, 0, offset, static_cast<uint32_t>(data.size())};
  co_return co_await impl_->Call(&p, data);
}

Task<Status> Client::Flush() {
  Pending p;
  p.h = {0, NBD_CMD_FLUSH, 0, 0, 0};
  co_return co_await impl_->Call(&p, {});
}

Task<Status> Client::Trim(uint64_t offset, uint32_t length, uint16_t flags) {
  Pending p;
  p.h = {flags, NBD_CMD_TRIM, 0, offset, length};
  co_return co_await impl_->Call(&p, {});
}

Task<Status> Client::WriteZeroes(uint64_t offset, uint32_t length, uint16_t flags) {
  Pending p;
  p.h = {flags, NBD_CMD_WRITE_ZEROES, 0, offset, length};
  co_return co_await impl_->Call(&p, {});
}

Task<Status> Client::Cache(uint64_t offset, uint32_t length) {
  Pending p;
  p.h = {0, NBD_CMD_CACHE, 0, offset, length};
  co_return co_await impl_->Call(&p, {});
}

Task<Result<std::vector<device::StatusExtent>>> Client::BlockStatus(uint64_t offset,
                                                                     uint32_t length,
                                                                     uint16_t flags) {
  Pending p;
  std::vector<device::StatusExtent> extents;
  p.h = {flags, NBD_CMD_BLOCK_STATUS, 0, offset, length};
  p.extents = &extents;
  Status st = co_await impl_->Call(&p, {});
  if (!st.ok()) co_return st;
  co_return extents;
}

Task<Status> Client::Close() {
  std::vector<AsyncSemaphore::Permit> all;
  for (uint32_t i = 0; i < impl_->max_slots; ++i) all.push_back(co_await impl_->slots.Acquire());
  auto done = std::make_shared<Oneshot<Status>>(impl_->env);
  asio::post(impl_->strand, [impl = impl_, done] {
    if (impl->closed || !impl->failed.ok()) {
      impl->closed = true;
      bool clean = impl->failed.ok() || impl->failed.code() == Status::Code::kShutdown;
      done->Set(clean ? Status::Ok() : impl->failed);
      return;
    }
    // DISC goes through the write queue, behind anything still being written.
    impl->closed = true;
    impl->close_done = done;
    Out& o = impl->queue.emplace_back();
    EncodeRequestHeader({0, NBD_CMD_DISC, 0, 0, 0}, o.header);
    impl->PumpWrite();
  });
  Status st = co_await done->Wait();
  co_return st;
}

}  // namespace portal::nbd
