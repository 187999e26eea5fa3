#include "control/server.h"

#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <asio/bind_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "nbd/listener.h"
#include "util/log.h"

namespace portal::control {

namespace {

using Socket = asio::local::stream_protocol::socket;
using Acceptor = asio::local::stream_protocol::acceptor;

auto Log() { return log::Get("portalbd::control"); }

// The one place where errno and asio errors become a Status for the control socket.
Status SocketError(const std::string& what, const std::error_code& ec) {
  return Status::IOError(fmt::format("{}: {}", what, ec.message()));
}

// OK if `path` is free to bind (a stale socket file is removed).
Status PreparePath(asio::io_context& io, const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();  // nothing there
  if (!S_ISSOCK(st.st_mode)) {
    return Status::InvalidArgument(
        fmt::format("control socket {} exists and is not a socket; refusing to replace it", path));
  }
  Socket probe(io);
  std::error_code ec;
  probe.open(asio::local::stream_protocol(), ec);
  if (!ec) probe.non_blocking(true, ec);  // a listener with a full backlog must not hang us
  if (ec) return SocketError("control socket probe", ec);
  probe.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (!ec || ec == asio::error::would_block || ec == asio::error::try_again ||
      ec == asio::error::in_progress) {
    return Status::Busy(fmt::format(
        "another portalbd is running: it answers on the control socket {}; stop it or use "
        "another socket (--socket, [nbd] socket)",
        path));
  }
  if (ec != asio::error::connection_refused && ec != asio::error::not_found &&
      ec.value() != ENOENT) {
    return SocketError("probing control socket " + path, ec);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return SocketError("removing stale control socket " + path,
                       std::error_code(errno, std::generic_category()));
  }
  Log()->info("removed stale control socket path={}", path);
  return Status::Ok();
}

// Gives the socket file at `path` its permissions: 0600, or `group_name`'s and 0660.
Status RestrictSocket(const std::string& path, const std::string& group_name) {
  if (!group_name.empty()) {
    std::array<char, 16384> buf;
    struct group g {};
    struct group* found = nullptr;
    int rc = ::getgrnam_r(group_name.c_str(), &g, buf.data(), buf.size(), &found);
    if (found == nullptr) {
      return Status::InvalidArgument(
          fmt::format("control.socket_group: no group named '{}'{}", group_name,
                      rc == 0 ? "" : fmt::format(" ({})", std::strerror(rc))));
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), found->gr_gid) != 0) {
      return SocketError(
          fmt::format("control.socket_group: chown {} to group {}", path, group_name),
          std::error_code(errno, std::generic_category()));
    }
  }
  const mode_t mode = group_name.empty() ? 0600 : 0660;
  if (::chmod(path.c_str(), mode) != 0) {
    return SocketError(fmt::format("chmod {:o} {}", mode, path),
                       std::error_code(errno, std::generic_category()));
  }
  return Status::Ok();
}

}  // namespace

struct Server::Impl {
  // A strand serializes accept completions with Shutdown()'s close().
  explicit Impl(asio::io_context& io) : acceptor(asio::make_strand(io)) {}
  Acceptor acceptor;
};

// One accepted socket. Everything runs on its strand: read until a line is complete, run
// that request, write the reply, then the next line; one request at a time.
class Connection final : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, Socket socket)
      : server_(server),
        socket_(std::move(socket)),
        strand_(asio::make_strand(server.env_.io_context())),
        reader_(server.options_.max_request_bytes) {}

  void Begin() {
    asio::post(strand_, [self = shared_from_this()] { self->Next(); });
  }

  // Closes at once when idle; a request in flight finishes and its reply is written first.
  void Shutdown() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopping_ = true;
      if (!self->busy_) self->Close();
    });
  }

 private:
  void Next() {
    if (closed_) return;
    if (stopping_) return Close();
    if (auto line = reader_.Next()) return Dispatch(std::move(*line));
    if (eof_) return Close();
    socket_.async_read_some(asio::buffer(buf_),
                            asio::bind_executor(strand_, [self = shared_from_this()](
                                                             const std::error_code& ec, size_t n) {
                              if (self->closed_) return;
                              if (ec) {
                                self->eof_ = true;
                                self->reader_.Finish();
                              } else {
                                self->reader_.Feed(std::string_view(self->buf_.data(), n));
                              }
                              self->Next();
                            }));
  }

  void Dispatch(LineReader::Line line) {
    if (line.too_long) {
      Log()->info("control: request too long; skipped");
      return Write(EncodeReply(
          ErrorReply{std::string(kRequestTooLong),
                     fmt::format("request is longer than {} bytes; skipped up to its newline",
                                 server_.options_.max_request_bytes)}));
    }
    std::string id;
    auto parsed = ParseRequest(line.text, &id);
    if (auto* err = std::get_if<ErrorReply>(&parsed)) {
      Log()->info("control: bad request code={} message=\"{}\"", err->code, err->message);
      return Write(EncodeReply(*err, id));
    }
    busy_ = true;
    Start(server_.handler_.Handle(std::move(std::get<Request>(parsed))),
          [self = shared_from_this(), id = std::move(id)](Reply reply) mutable {
            std::string bytes = EncodeReply(reply, id);
            asio::post(self->strand_, [self, bytes = std::move(bytes)]() mutable {
              self->busy_ = false;
              self->Write(std::move(bytes));
            });
          });
  }

  void Write(std::string bytes) {
    if (closed_) return;
    out_ = std::move(bytes);
    asio::async_write(socket_, asio::buffer(out_),
                      asio::bind_executor(
                          strand_, [self = shared_from_this()](const std::error_code& ec, size_t) {
                            if (ec) return self->Close();  // the client went away
                            self->Next();
                          }));
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
    server_.Unregister(this);
  }

  Server& server_;
  Socket socket_;
  asio::strand<asio::io_context::executor_type> strand_;
  LineReader reader_;
  std::array<char, 4096> buf_;
  std::string out_;
  bool busy_ = false;      // a request is running
  bool eof_ = false;       // the client will send nothing more
  bool stopping_ = false;  // the server is shutting down
  bool closed_ = false;
};

Server::Server(RealEnv& env, Handler& handler, Options options)
    : env_(env),
      handler_(handler),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(env.io_context())),
      connections_(options_.max_connections) {}

Server::~Server() { Shutdown(); }

Status Server::Listen() {
  const std::string& path = options_.path;
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument("control socket needs an absolute path, got '" + path + "'");
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument(
        fmt::format("control socket path {} is {} bytes long; the limit is {}", path, path.size(),
                    sizeof(sockaddr_un{}.sun_path) - 1));
  }
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(parent, ec);
  if (ec) return SocketError("cannot create the control socket's directory " + parent.string(), ec);
  RETURN_IF_ERROR(PreparePath(env_.io_context(), path));
  Acceptor& acceptor = impl_->acceptor;
  const asio::local::stream_protocol::endpoint ep(path);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (ec) return SocketError("cannot bind the control socket " + path, ec);
  bound_ = true;
  // Before listen(): until then nobody can connect, so the file is never reachable with
  // the umask's wider permissions.
  RETURN_IF_ERROR(RestrictSocket(path, options_.group));
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return SocketError("cannot listen on the control socket " + path, ec);
  return Status::Ok();
}

void Server::Start() {
  started_ = true;
  asio::post(impl_->acceptor.get_executor(), [this] { Accept(); });
}

void Server::Accept() {
  impl_->acceptor.async_accept([this](const std::error_code& ec, Socket socket) {
    if (connections_.stopping()) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        Log()->warn("control socket accept failed error=\"{}\"", ec.message());
        Accept();
      }
      return;
    }
    // Admitted in one critical section with Shutdown()'s snapshot of the connections: a
    // connection is either in it (and told to shut down) or never started.
    ConnectionSet<Connection>::Admit admit;
    std::shared_ptr<Connection> conn = connections_.Add(
        [&] { return std::make_shared<Connection>(*this, std::move(socket)); }, &admit);
    if (admit == ConnectionSet<Connection>::Admit::kStopping) return;
    if (admit == ConnectionSet<Connection>::Admit::kFull) {
      Log()->warn("control connection refused: limit reached max_connections={}",
                  options_.max_connections);
      auto s = std::make_shared<Socket>(std::move(socket));
      auto msg = std::make_shared<std::string>(
          EncodeReply(ErrorReply{std::string(kTooManyConnections),
                                 fmt::format("too many control connections (limit {}); try again",
                                             options_.max_connections)}));
      asio::async_write(*s, asio::buffer(*msg), [s, msg](const std::error_code&, size_t) {
        std::error_code ignored;
        s->close(ignored);
      });
    } else {
      conn->Begin();
    }
    Accept();
  });
}

void Server::Unregister(Connection* c) { connections_.Remove(c); }

size_t Server::connection_count() const { return connections_.size(); }

void Server::Shutdown(uint64_t timeout_ms) {
  std::vector<std::shared_ptr<Connection>> conns;
  if (!connections_.Stop(&conns)) return;
  nbd::CloseAcceptor(impl_->acceptor, started_);
  for (auto& c : conns) c->Shutdown();
  if (!connections_.WaitEmpty(std::chrono::milliseconds(timeout_ms))) {
    Log()->warn("shutdown: control requests still running after {} ms count={}", timeout_ms,
                connections_.size());
  }
  if (bound_) ::unlink(options_.path.c_str());
}

}  // namespace portal::control
