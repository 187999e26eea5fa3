#include "trace/proxy.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include <asio/bind_executor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>

#include "nbd/listener.h"
#include "nbd/server.h"  // ParseListenAddress
#include "nbd/tls.h"
#include "trace/nbd_tap.h"
#include "util/log.h"

namespace portal::trace {

using Socket = asio::generic::stream_protocol::socket;
using TlsStream = asio::ssl::stream<Socket&>;
using nbd::Acceptor;
using nbd::Endpoint;

namespace {
auto Log() { return log::Get("portalbd::trace"); }
constexpr size_t kReadChunk = 256 * 1024;
}  // namespace

// One side of a connection: its socket, and after STARTTLS the TLS stream every byte goes
// through.
struct Side {
  explicit Side(Socket s) : socket(std::move(s)) {}
  explicit Side(asio::io_context& io) : socket(io) {}
  template <typename Buffer, typename Handler>
  void ReadSome(const Buffer& buffer, Handler&& handler) {
    if (tls) {
      tls->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      socket.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }
  template <typename Buffer, typename Handler>
  void Write(const Buffer& buffer, Handler&& handler) {
    if (tls) {
      asio::async_write(*tls, buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket, buffer, std::forward<Handler>(handler));
    }
  }
  Socket socket;
  std::unique_ptr<TlsStream> tls;
};

struct Proxy::Impl {
  explicit Impl(asio::io_context& io) : acceptor(asio::make_strand(io)) {}
  Acceptor acceptor;
  Endpoint upstream;
  bool upstream_tcp = true;
  bool listen_tcp = true;
};

class ProxyConnection final : public std::enable_shared_from_this<ProxyConnection>,
                              public NbdTap::Sink {
 public:
  ProxyConnection(Proxy& proxy, Socket client, uint32_t id, std::string peer)
      : proxy_(proxy),
        strand_(asio::make_strand(proxy.env_.io_context())),
        client_(std::move(client)),
        upstream_(proxy.env_.io_context()),
        id_(id),
        peer_(std::move(peer)),
        tap_(*this, NbdTap::Options{.client_tls = proxy.options_.tls_mode,
                                    .upstream_tls = proxy.options_.upstream_tls != nullptr}),
        cin_(kReadChunk),
        uin_(kReadChunk) {}

  void Begin() {
    asio::post(strand_, [self = shared_from_this()] {
      self->upstream_.socket.async_connect(
          self->proxy_.impl_->upstream,
          asio::bind_executor(self->strand_, [self](const std::error_code& ec) {
            if (ec) {
              Log()->warn("conn={} cannot connect to upstream {}: {}", self->id_,
                          self->proxy_.options_.upstream, ec.message());
              self->Close();
              return;
            }
            if (self->proxy_.impl_->upstream_tcp) {
              std::error_code ignored;
              self->upstream_.socket.set_option(asio::ip::tcp::no_delay(true), ignored);
            }
            self->Pump();
          }));
    });
  }

  // Stop reading new requests; in-flight ones finish.
  void BeginStop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopping_ = true;
      self->Pump();
    });
  }

  void ForceClose() {
    asio::post(strand_, [self = shared_from_this()] { self->Close(); });
  }

  size_t inflight() const { return inflight_.load(); }

  // NbdTap::Sink
  void OnExport(uint64_t size_bytes, uint16_t flags) override {
    Log()->info("conn={} transmission export_size_bytes={} flags={:#06x} structured_replies={}",
                id_, size_bytes, flags, tap_.structured_replies());
    if (!proxy_.recorder_.SetDeviceSize(size_bytes)) {
      Log()->warn("conn={} export size {} differs from the first connection's; the trace "
                  "keeps the first", id_, size_bytes);
    }
  }
  void OnRequest(const TappedRequest& r) override {
    ++recorded_;
    Status st = proxy_.recorder_.Record(id_, r);
    if (!st.ok() && !record_error_logged_) {
      record_error_logged_ = true;
      Log()->error("conn={} cannot record: {}", id_, st.ToString());
    }
  }

 private:
  uint64_t Now() { return proxy_.env_.NowNanos(); }

  void ProcessClient() {
    size_t used = tap_.FromClient(std::span<const uint8_t>(cin_.data(), cin_len_), Now(), &to_up_,
                                  &to_cl_);
    if (used > 0) {
      std::memmove(cin_.data(), cin_.data() + used, cin_len_ - used);
      cin_len_ -= used;
    }
    NoteTap();
  }

  void NoteTap() {
    size_t inflight = tap_.inflight();
    if (inflight_.exchange(inflight) != 0 && inflight == 0) proxy_.NoteDrained();
    if (tap_.blind() && !blind_logged_) {
      blind_logged_ = true;
      Log()->warn("conn={} no longer recording (relaying unparsed): {}", id_,
                  tap_.blind_reason());
    }
  }

  void Pump() {
    if (closed_) return;
    auto self = shared_from_this();
    if (!up_writing_ && !to_up_.empty() && !up_shut_) {
      up_wbuf_.swap(to_up_);
      up_writing_ = true;
      upstream_.Write(asio::buffer(up_wbuf_),
                        asio::bind_executor(strand_, [self](const std::error_code& ec, size_t) {
                          self->up_writing_ = false;
                          self->up_wbuf_.clear();
                          if (ec) return self->Fail("writing to the upstream", ec);
                          self->Pump();
                        }));
    }
    // The ACK to the client's STARTTLS waits until no raw read is pending on the client:
    // once the client has the ACK its ClientHello may come, and must reach the TLS stream.
    const bool client_tls_next = tap_.tls_step() == NbdTap::TlsStep::kClient;
    if (client_tls_next && reading_client_ && !tls_cancelled_read_) {
      tls_cancelled_read_ = true;
      std::error_code ignored;
      client_.socket.cancel(ignored);
    }
    if (!cl_writing_ && !to_cl_.empty() && !(client_tls_next && reading_client_)) {
      cl_wbuf_.swap(to_cl_);
      cl_writing_ = true;
      client_.Write(asio::buffer(cl_wbuf_),
                        asio::bind_executor(strand_, [self](const std::error_code& ec, size_t) {
                          self->cl_writing_ = false;
                          self->cl_wbuf_.clear();
                          if (ec) return self->Fail("writing to the client", ec);
                          self->Pump();
                        }));
    }
    // The client is done and everything it sent is upstream: pass the close on.
    if (client_eof_ && !up_shut_ && cin_len_ == 0 && to_up_.empty() && !up_writing_) {
      up_shut_ = true;
      std::error_code ignored;
      upstream_.socket.shutdown(asio::socket_base::shutdown_send, ignored);
    }
    // The upstream is done and the client has everything it sent: end.
    if (up_eof_ && to_cl_.empty() && !cl_writing_) {
      Close();
      return;
    }
    if (!tap_.close_reason().empty()) {
      if (!close_logged_) {
        close_logged_ = true;
        Log()->warn("conn={} closing: {}", id_, tap_.close_reason());
      }
      if (to_cl_.empty() && !cl_writing_) Close();
      return;
    }
    // No new read on the side about to start TLS until its handshake is done: a raw read
    // would take the handshake's bytes. The other side is still read (the tap holds the
    // client's bytes; an upstream that gives up on a stalled client is noticed).
    const NbdTap::TlsStep step = tap_.tls_step();
    if (step != NbdTap::TlsStep::kNone) {
      MaybeStartTls();
      if (closed_) return;
    }
    bool want_client = !stopping_ || tap_.inflight() > 0 || cin_len_ > 0;
    if (step != NbdTap::TlsStep::kClient && !reading_client_ && !client_eof_ && want_client &&
        cin_len_ < cin_.size() &&
        to_up_.size() < Proxy::kBufferBytes) {
      reading_client_ = true;
      const size_t at = cin_len_;
      client_.ReadSome(
          asio::buffer(cin_.data() + at, cin_.size() - at),
          asio::bind_executor(strand_, [self, at](const std::error_code& ec, size_t n) {
            self->reading_client_ = false;
            if (ec == asio::error::operation_aborted && self->tls_cancelled_read_) {
              // Cancelled for the client's TLS handshake (MaybeStartTls).
            } else if (ec) {
              self->client_eof_ = true;
            } else {
              // Held bytes may have been taken (and the rest moved down) while this read
              // was pending (an option reply or a TLS handshake let the tap go on): the new
              // bytes go right after what is left, never after stale ones.
              if (at != self->cin_len_) {
                std::memmove(self->cin_.data() + self->cin_len_, self->cin_.data() + at, n);
              }
              self->cin_len_ += n;
              self->ProcessClient();
            }
            self->Pump();
          }));
    }
    if (step != NbdTap::TlsStep::kUpstream && !reading_up_ && !up_eof_ &&
        to_cl_.size() < Proxy::kBufferBytes) {
      reading_up_ = true;
      upstream_.ReadSome(
          asio::buffer(uin_.data(), uin_.size()),
          asio::bind_executor(strand_, [self](const std::error_code& ec, size_t n) {
            self->reading_up_ = false;
            if (ec) {
              self->up_eof_ = true;
            } else {
              self->tap_.FromServer(std::span<const uint8_t>(self->uin_.data(), n), self->Now(),
                                    &self->to_cl_);
              self->ProcessClient();  // bytes held for an option reply may move on now
            }
            self->Pump();
          }));
    }
  }

  // The tap wants a TLS handshake: start it once what precedes it is written and no raw
  // read is pending on that side (Pump cancels a pending client read before it writes the
  // ACK: the client sends nothing between STARTTLS and the ACK).
  void MaybeStartTls() {
    if (tls_handshaking_) return;
    const bool client = tap_.tls_step() == NbdTap::TlsStep::kClient;
    if (client) {
      if (reading_client_ || cl_writing_ || !to_cl_.empty()) return;  // see Pump
      if (cin_len_ > 0) {
        Log()->warn("conn={} the client sent {} bytes before the STARTTLS reply; closing", id_,
                    cin_len_);
        Close();
        return;
      }
    } else if (reading_up_ || up_writing_ || !to_up_.empty()) {
      return;
    }
    Side& side = client ? client_ : upstream_;
    nbd::TlsContext& ctx = client ? *proxy_.options_.tls : *proxy_.options_.upstream_tls;
    side.tls = std::make_unique<TlsStream>(side.socket, ctx.context());
    if (!client) {
      Status st =
          nbd::SetPeerName(side.tls->native_handle(), proxy_.options_.upstream_tls_hostname);
      if (!st.ok()) {
        Log()->warn("conn={} {}", id_, st.ToString());
        Close();
        return;
      }
    }
    tls_handshaking_ = true;
    side.tls->async_handshake(
        client ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
        asio::bind_executor(strand_, [self = shared_from_this(),
                                      client](const std::error_code& ec) {
          self->tls_handshaking_ = false;
          self->tls_cancelled_read_ = false;
          if (self->closed_) return;
          const char* who = client ? "client" : "upstream";
          Side& side = client ? self->client_ : self->upstream_;
          if (ec) {
            Log()->warn("conn={} TLS handshake with the {} failed: {}", self->id_, who,
                        ec.message());
            self->Close();
            return;
          }
          Log()->info("conn={} TLS with the {} {}", self->id_, who,
                      nbd::DescribeTlsSession(side.tls->native_handle()));
          self->tap_.TlsStarted();
          self->ProcessClient();
          self->Pump();
        }));
  }

  void Fail(const char* what, const std::error_code& ec) {
    if (!closed_) Log()->debug("conn={} {} failed: {}", id_, what, ec.message());
    Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    client_.socket.shutdown(asio::socket_base::shutdown_both, ignored);
    client_.socket.close(ignored);
    upstream_.socket.shutdown(asio::socket_base::shutdown_both, ignored);
    upstream_.socket.close(ignored);
    size_t lost = tap_.inflight();
    inflight_.store(0);
    proxy_.lost_ += lost;
    proxy_.NoteDrained();
    if (lost > 0) {
      Log()->warn("conn={} closed with {} requests unanswered (not recorded)", id_, lost);
    }
    Log()->info("conn={} closed peer={} requests_recorded={}", id_, peer_, recorded_);
    proxy_.Unregister(this);
  }

  Proxy& proxy_;
  asio::strand<asio::io_context::executor_type> strand_;
  Side client_;
  Side upstream_;
  const uint32_t id_;
  const std::string peer_;
  NbdTap tap_;
  std::vector<uint8_t> cin_;  // client bytes read, [0, cin_len_) not yet taken by the tap
  size_t cin_len_ = 0;
  std::vector<uint8_t> uin_;
  std::string to_up_, up_wbuf_;
  std::string to_cl_, cl_wbuf_;
  bool up_writing_ = false, cl_writing_ = false;
  bool reading_client_ = false, reading_up_ = false;
  bool client_eof_ = false, up_eof_ = false, up_shut_ = false;
  bool stopping_ = false, closed_ = false;
  bool tls_handshaking_ = false, tls_cancelled_read_ = false, close_logged_ = false;
  bool blind_logged_ = false, record_error_logged_ = false;
  uint64_t recorded_ = 0;
  std::atomic<size_t> inflight_{0};
};

Proxy::Proxy(RealEnv& env, Recorder& recorder, Options options)
    : env_(env),
      recorder_(recorder),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(env.io_context())),
      connections_(options_.max_connections) {}

Proxy::~Proxy() { Shutdown(0); }

Status Proxy::Listen() {
  // Upstream first: a typo there should fail before anything listens.
  auto up = nbd::ParseListenAddress(options_.upstream);
  if (!up.ok()) return up.status().WithContext("--upstream");
  auto endpoint = nbd::ResolveEndpoint(env_.io_context(), options_.upstream);
  if (!endpoint.ok()) return endpoint.status().WithContext("--upstream");
  impl_->upstream = *endpoint;
  impl_->upstream_tcp = !up->is_unix;
  auto bound = nbd::BindListener(env_.io_context(), impl_->acceptor, options_.listen);
  if (!bound.ok()) return bound.status().WithContext("--listen");
  impl_->listen_tcp = bound->tcp;
  unix_path_ = bound->unix_path;
  bound_address_ = bound->address;
  return Status::Ok();
}

void Proxy::Start() {
  started_ = true;
  asio::post(impl_->acceptor.get_executor(), [this] { Accept(); });
}

void Proxy::Accept() {
  impl_->acceptor.async_accept([this](const std::error_code& ec, Socket socket) {
    if (connections_.stopping()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        Log()->warn("accept failed: {}", ec.message());
        Accept();
      }
      return;
    }
    std::error_code ignored;
    if (impl_->listen_tcp) socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    uint32_t id = static_cast<uint32_t>(accepted_.load() + 1);
    ConnectionSet<ProxyConnection>::Admit admit;
    std::shared_ptr<ProxyConnection> conn = connections_.Add(
        [&] {
          ++accepted_;
          return std::make_shared<ProxyConnection>(*this, std::move(socket), id,
                                                   impl_->listen_tcp ? "tcp" : "unix");
        },
        &admit);
    if (admit == ConnectionSet<ProxyConnection>::Admit::kFull) {
      Log()->warn("connection refused: {} connections open", connections_.size());
    }
    if (!conn) socket.close(ignored);
    if (conn) {
      Log()->info("conn={} accepted; connecting to upstream {}", id, options_.upstream);
      conn->Begin();
    }
    Accept();
  });
}

void Proxy::NoteDrained() { connections_.Notify(); }

void Proxy::Unregister(ProxyConnection* c) { connections_.Remove(c); }

void Proxy::Shutdown(uint64_t drain_ms) {
  std::vector<std::shared_ptr<ProxyConnection>> conns;
  if (!connections_.Stop(&conns)) return;
  nbd::CloseAcceptor(impl_->acceptor, started_);
  for (auto& c : conns) c->BeginStop();
  connections_.WaitFor(std::chrono::milliseconds(drain_ms), [&] {
    size_t inflight = 0;
    for (auto& c : conns) inflight += c->inflight();
    return inflight == 0;
  });
  for (auto& c : conns) c->ForceClose();
  if (!connections_.WaitEmpty(std::chrono::seconds(5))) {
    Log()->warn("shutdown: {} connections did not close", connections_.size());
  }
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

}  // namespace portal::trace
