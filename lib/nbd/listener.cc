#include "nbd/listener.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>

#include "nbd/server.h"  // ParseListenAddress
#include "util/log.h"

namespace portal::nbd {
namespace {

// Returns OK if `path` is free to bind (removing a stale socket file).
Status PrepareUnixPath(asio::io_context& io, const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();  // nothing there
  if (!S_ISSOCK(st.st_mode)) {
    return Status::InvalidArgument(path + " exists and is not a socket; refusing to replace it");
  }
  asio::local::stream_protocol::socket probe(io);
  std::error_code ec;
  probe.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (!ec) {
    return Status::Busy("another server is listening on unix:" + path);
  }
  if (::unlink(path.c_str()) != 0) {
    return Status::IOError("cannot remove stale socket " + path + ": " + std::strerror(errno));
  }
  log::Get("portalbd::nbd")->info("removed stale socket path={}", path);
  return Status::Ok();
}

}  // namespace

Result<BoundListener> BindListener(asio::io_context& io, Acceptor& acceptor,
                                   const std::string& address) {
  auto parsed = ParseListenAddress(address);
  if (!parsed.ok()) return parsed.status();
  BoundListener out;
  std::error_code ec;
  if (parsed->is_unix) {
    out.tcp = false;
    RETURN_IF_ERROR(PrepareUnixPath(io, parsed->host));
    asio::local::stream_protocol::endpoint ep(parsed->host);
    acceptor.open(Endpoint(ep).protocol(), ec);
    if (!ec) acceptor.bind(Endpoint(ep), ec);
    if (!ec) {
      ::chmod(parsed->host.c_str(), 0660);
      // Only a path we bound is ours to unlink at shutdown: if bind lost a race with
      // another server, the file is that server's.
      out.unix_path = parsed->host;
      out.address = "unix:" + parsed->host;
    }
  } else {
    auto ip = asio::ip::make_address(parsed->host, ec);
    if (ec) {
      return Status::InvalidArgument("bad listen address '" + address + "': " + ec.message());
    }
    Endpoint gep(asio::ip::tcp::endpoint(ip, parsed->port));
    acceptor.open(gep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(gep, ec);
    if (!ec) {
      // Read back the port actually bound (port 0 asks the kernel to choose); sin_port
      // and sin6_port sit at the same offset.
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      ::getsockname(acceptor.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len);
      uint16_t port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      out.address = (ip.is_v6() ? "[" + parsed->host + "]" : parsed->host) + ":" +
                    std::to_string(port);
    }
  }
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot listen on " + address + ": " + ec.message());
  return out;
}

Result<Endpoint> ResolveEndpoint(asio::io_context& io, const std::string& address) {
  auto parsed = ParseListenAddress(address);
  if (!parsed.ok()) return parsed.status();
  if (parsed->is_unix) return Endpoint(asio::local::stream_protocol::endpoint(parsed->host));
  std::error_code ec;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(parsed->host, std::to_string(parsed->port),
                                  asio::ip::tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return Status::InvalidArgument("cannot resolve " + address + ": " +
                                   (ec ? ec.message() : std::string("no address")));
  }
  return Endpoint(results.begin()->endpoint());
}

}  // namespace portal::nbd
