// s3-front: a reverse HTTP/1.1 proxy that makes a local S3 server (s3rver, radosgw) behave
// like a remote one for benchmarks: every request waits --latency-ms before it is
// forwarded, each connection carries at most --conn-mbps in each direction, and requests
// and bytes are counted by HTTP method.
//
//   s3-front --listen 127.0.0.1:0 --upstream 127.0.0.1:4568 --latency-ms 25 --conn-mbps 150
//
// The first line on stdout is "s3-front: listening on HOST:PORT" (port 0 picks a free
// one). Clients use http://HOST:PORT as their endpoint. Bytes pass through untouched,
// the Host header included, so SigV4 signatures (which sign Host) stay valid: the server
// sees exactly what the client signed. `--latency-ms 0 --conn-mbps 0` is a plain proxy.
//
// Counters: `GET /__stats` on the front's port answers them as JSON (on a connection of
// its own, which it then closes); SIGUSR1 and exit (SIGINT, SIGTERM) write them to
// --stats-file when given. S3 bucket names cannot hold '_', so /__stats shadows nothing.
//   {"connections": N, "bytes_in": N, "bytes_out": N,
//    "methods": {"PUT": {"requests": N, "bytes_in": N, "bytes_out": N}, ...},
//    "status": {"2xx": N, "4xx": N, ...}}
// bytes_in/bytes_out at the top count every byte read from / written to clients; per
// method they count request / response bodies (chunk framing included).
//
// Model: one upstream connection per client connection, opened at its first request, so
// the per-connection cap is the client's (as with a real server). Request bodies framed
// by Content-Length or chunked; responses by Content-Length, chunked or close; HEAD, 1xx
// (100-continue), 204 and 304 carry none. Single-threaded: it spends 0.3-0.4 CPU seconds
// carrying 512 MiB of 1 MiB PUTs and GETs on the 2-core development machine, far from
// the bottleneck (`scripts/bench-s3-peers.sh` prints that and the ceilings with and
// without it).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <asio.hpp>

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kBufferBytes = 256 * 1024;  // one read, one paced write
constexpr size_t kMaxHeadBytes = 64 * 1024;  // a longer head (or chunk line) is refused

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string upstream;
  double latency_ms = 25;
  double conn_mbps = 150;  // MB/s (10^6 bytes) per connection and direction; 0: no cap
  std::string stats_file;
};

struct MethodStats {
  uint64_t requests = 0, bytes_in = 0, bytes_out = 0;
};

struct Stats {
  uint64_t connections = 0, bytes_in = 0, bytes_out = 0;
  std::map<std::string, MethodStats> methods;
  std::map<std::string, uint64_t> status;  // "2xx" -> count

  std::string Json() const {
    std::string s = "{\"connections\": " + std::to_string(connections) +
                    ", \"bytes_in\": " + std::to_string(bytes_in) +
                    ", \"bytes_out\": " + std::to_string(bytes_out) + ", \"methods\": {";
    const char* sep = "";
    for (const auto& [m, v] : methods) {
      s += sep + ("\"" + m + "\": {\"requests\": ") + std::to_string(v.requests) +
           ", \"bytes_in\": " + std::to_string(v.bytes_in) +
           ", \"bytes_out\": " + std::to_string(v.bytes_out) + "}";
      sep = ", ";
    }
    s += "}, \"status\": {";
    sep = "";
    for (const auto& [c, n] : status) {
      s += sep + ("\"" + c + "\": ") + std::to_string(n);
      sep = ", ";
    }
    return s + "}}\n";
  }
};

// A message head: the start line and the header fields (names lower-cased).
struct Head {
  std::string raw;                 // as received, forwarded unchanged
  std::vector<std::string> start;  // "PUT" "/b/k" "HTTP/1.1"  or  "HTTP/1.1" "200" "OK"
  std::map<std::string, std::string> fields;

  const std::string* Field(const std::string& name) const {
    auto it = fields.find(name);
    return it == fields.end() ? nullptr : &it->second;
  }
  bool Chunked() const {
    const std::string* te = Field("transfer-encoding");
    return te && te->find("chunked") != std::string::npos;
  }
  std::optional<uint64_t> ContentLength() const {
    const std::string* cl = Field("content-length");
    if (!cl) return std::nullopt;
    return std::stoull(*cl);
  }
};

Head ParseHead(std::string raw) {
  Head h;
  size_t eol = raw.find("\r\n");
  std::string line = raw.substr(0, eol);
  for (size_t i = 0; i < 2; ++i) {  // the third part (reason phrase) may hold spaces
    size_t sp = line.find(' ');
    if (sp == std::string::npos) break;
    h.start.push_back(line.substr(0, sp));
    line.erase(0, sp + 1);
  }
  h.start.push_back(line);
  for (size_t pos = eol + 2; pos < raw.size();) {
    size_t end = raw.find("\r\n", pos);
    if (end == std::string::npos || end == pos) break;
    std::string f = raw.substr(pos, end - pos);
    size_t colon = f.find(':');
    if (colon != std::string::npos) {
      std::string name = f.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      size_t v = f.find_first_not_of(" \t", colon + 1);
      h.fields[name] = v == std::string::npos ? "" : f.substr(v);
    }
    pos = end + 2;
  }
  if (h.start.size() < 3) throw std::runtime_error("malformed start line");
  h.raw = std::move(raw);
  return h;
}

// Spaces writes so that they average at most `bytes_per_s`; idle time earns no credit.
class Pacer {
 public:
  explicit Pacer(double bytes_per_s) : rate_(bytes_per_s) {}

  awaitable<void> Before(size_t n, asio::steady_timer& timer) {
    if (rate_ <= 0) co_return;
    auto now = Clock::now();
    if (next_ < now) next_ = now;
    if (next_ > now) {
      timer.expires_at(next_);
      co_await timer.async_wait(use_awaitable);
    }
    next_ += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(n / rate_));
  }

 private:
  double rate_;
  Clock::time_point next_ = Clock::now();
};

// One direction of a connection: reads `in`, writes what it forwards to `out`, paced.
class Pipe {
 public:
  Pipe(tcp::socket& in, tcp::socket& out, double bytes_per_s, uint64_t* read_counter,
       uint64_t* write_counter)
      : in_(in),
        out_(out),
        pacer_(bytes_per_s),
        timer_(in.get_executor()),
        buf_(kBufferBytes),
        read_counter_(read_counter),
        write_counter_(write_counter) {}

  // The next message head, or nullopt on EOF before its first byte.
  awaitable<std::optional<Head>> ReadHead() {
    std::string head;
    for (;;) {
      size_t at = Find("\r\n\r\n");
      if (at != std::string::npos) {
        head.assign(&buf_[b_], at + 4);
        b_ += at + 4;
        co_return ParseHead(std::move(head));
      }
      if (e_ - b_ > kMaxHeadBytes) throw std::runtime_error("head too long");
      if (!co_await Fill()) {
        if (e_ == b_) co_return std::nullopt;
        throw std::runtime_error("EOF inside a head");
      }
    }
  }

  awaitable<void> Write(const std::string& s) {
    co_await pacer_.Before(s.size(), timer_);
    co_await asio::async_write(out_, asio::buffer(s), use_awaitable);
    if (write_counter_) *write_counter_ += s.size();
  }

  // Forwards the next n bytes; returns n.
  awaitable<uint64_t> Forward(uint64_t n) {
    for (uint64_t left = n; left > 0;) {
      if (b_ == e_ && !co_await Fill()) throw std::runtime_error("EOF inside a body");
      size_t m = std::min<uint64_t>(left, e_ - b_);
      co_await pacer_.Before(m, timer_);
      co_await asio::async_write(out_, asio::buffer(&buf_[b_], m), use_awaitable);
      if (write_counter_) *write_counter_ += m;
      b_ += m;
      left -= m;
    }
    co_return n;
  }

  // Forwards until `in` closes; returns the bytes forwarded.
  awaitable<uint64_t> ForwardToEof() {
    uint64_t n = 0;
    for (;;) {
      if (b_ == e_ && !co_await Fill()) co_return n;
      n += co_await Forward(e_ - b_);
    }
  }

  // Forwards a chunked body, trailer included; returns its bytes.
  awaitable<uint64_t> ForwardChunked() {
    uint64_t n = 0;
    for (;;) {
      std::string line = co_await ReadLine();
      n += line.size();
      co_await Write(line);
      uint64_t size = std::stoull(line, nullptr, 16);  // stops at ';' extensions and CRLF
      if (size == 0) break;
      n += co_await Forward(size + 2);  // the data and its CRLF
    }
    for (;;) {  // trailer fields, then an empty line
      std::string line = co_await ReadLine();
      n += line.size();
      co_await Write(line);
      if (line == "\r\n") co_return n;
    }
  }

 private:
  size_t Find(const char* s) const {
    std::string_view v(&buf_[b_], e_ - b_);
    return v.find(s);
  }

  // A line with its CRLF.
  awaitable<std::string> ReadLine() {
    for (;;) {
      size_t at = Find("\r\n");
      if (at != std::string::npos) {
        std::string line(&buf_[b_], at + 2);
        b_ += at + 2;
        co_return line;
      }
      if (e_ - b_ > kMaxHeadBytes) throw std::runtime_error("chunk line too long");
      if (!co_await Fill()) throw std::runtime_error("EOF inside a chunked body");
    }
  }

  // Reads more into the buffer (compacting it first); false on EOF.
  awaitable<bool> Fill() {
    if (b_ > 0) {
      std::copy(buf_.begin() + b_, buf_.begin() + e_, buf_.begin());
      e_ -= b_;
      b_ = 0;
    }
    if (e_ == buf_.size()) buf_.resize(buf_.size() * 2);  // a long head; bounded by callers
    asio::error_code ec;
    size_t n = co_await in_.async_read_some(asio::buffer(&buf_[e_], buf_.size() - e_),
                                            asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::eof) co_return false;
    if (ec) throw asio::system_error(ec);
    e_ += n;
    if (read_counter_) *read_counter_ += n;
    co_return true;
  }

  tcp::socket& in_;
  tcp::socket& out_;
  Pacer pacer_;
  asio::steady_timer timer_;
  std::vector<char> buf_;
  size_t b_ = 0, e_ = 0;  // unread bytes: buf_[b_, e_)
  uint64_t* read_counter_;
  uint64_t* write_counter_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket client, const Options& opt, const tcp::endpoint& upstream, Stats& stats)
      : client_(std::move(client)),
        upstream_(client_.get_executor()),
        opt_(opt),
        upstream_ep_(upstream),
        stats_(stats),
        requests_(client_, upstream_, opt.conn_mbps * 1e6, &stats.bytes_in, nullptr),
        responses_(upstream_, client_, opt.conn_mbps * 1e6, nullptr, &stats.bytes_out) {}

  awaitable<void> Requests() {
    auto self = shared_from_this();
    try {
      asio::steady_timer delay(client_.get_executor());
      while (std::optional<Head> h = co_await requests_.ReadHead()) {
        if (!upstream_.is_open() && h->start[1].rfind("/__stats", 0) == 0) {
          std::string body = stats_.Json();
          std::string reply =
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              "Connection: close\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n\r\n" + body;
          co_await asio::async_write(client_, asio::buffer(reply), use_awaitable);
          break;
        }
        MethodStats& m = stats_.methods[h->start[0]];
        ++m.requests;
        if (opt_.latency_ms > 0) {
          delay.expires_after(std::chrono::microseconds(int64_t(opt_.latency_ms * 1000)));
          co_await delay.async_wait(use_awaitable);
        }
        if (!upstream_.is_open()) {
          co_await upstream_.async_connect(upstream_ep_, use_awaitable);
          upstream_.set_option(tcp::no_delay(true));
          asio::co_spawn(client_.get_executor(), Responses(), asio::detached);
        }
        methods_.push_back(h->start[0]);
        co_await requests_.Write(h->raw);
        if (h->Chunked()) {
          m.bytes_in += co_await requests_.ForwardChunked();
        } else if (auto n = h->ContentLength()) {
          m.bytes_in += co_await requests_.Forward(*n);
        }
      }
      // The client is done: let the server finish its responses, then it closes.
      if (upstream_.is_open())
        upstream_.shutdown(tcp::socket::shutdown_send);
      else
        client_.close();
    } catch (const std::exception&) {
      Close();
    }
  }

 private:
  awaitable<void> Responses() {
    auto self = shared_from_this();
    try {
      for (;;) {
        std::optional<Head> h = co_await responses_.ReadHead();
        if (!h && methods_.empty()) {
          // The server closed an idle connection (s3rver: after 5 s). The client keeps
          // its own; the next request opens a new one. A request waiting out its latency
          // is not lost here, as it is not pushed to methods_ until it is forwarded.
          asio::error_code ignored;
          upstream_.close(ignored);
          co_return;
        }
        if (!h) break;  // closed with responses owed: the client sees the same
        int code = std::stoi(h->start[1]);
        stats_.status[std::to_string(code / 100) + "xx"]++;
        co_await responses_.Write(h->raw);
        if (code / 100 == 1 && code != 101) continue;  // 100 Continue: the real one follows
        std::string method = methods_.empty() ? "GET" : methods_.front();
        if (!methods_.empty()) methods_.pop_front();
        MethodStats& m = stats_.methods[method];
        if (method == "HEAD" || code == 204 || code == 304) continue;
        if (h->Chunked()) {
          m.bytes_out += co_await responses_.ForwardChunked();
        } else if (auto n = h->ContentLength()) {
          m.bytes_out += co_await responses_.Forward(*n);
        } else {
          m.bytes_out += co_await responses_.ForwardToEof();
          break;
        }
      }
    } catch (const std::exception&) {
    }
    Close();
  }

  void Close() {
    asio::error_code ignored;
    client_.close(ignored);
    upstream_.close(ignored);
  }

  tcp::socket client_, upstream_;
  const Options& opt_;
  tcp::endpoint upstream_ep_;
  Stats& stats_;
  std::deque<std::string> methods_;  // of requests forwarded, awaiting their responses
  // upstream_ is open from a client's first request until the server closes it.
  Pipe requests_, responses_;
};

tcp::endpoint Resolve(asio::io_context& io, const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("expected HOST:PORT: " + host_port);
  std::string host = host_port.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  tcp::resolver r(io);
  return *r.resolve(host, host_port.substr(colon + 1)).begin();
}

awaitable<void> Accept(tcp::acceptor& acceptor, const Options& opt, tcp::endpoint upstream,
                       Stats& stats) {
  for (;;) {
    tcp::socket s = co_await acceptor.async_accept(use_awaitable);
    s.set_option(tcp::no_delay(true));
    ++stats.connections;
    auto session = std::make_shared<Session>(std::move(s), opt, upstream, stats);
    asio::co_spawn(acceptor.get_executor(), session->Requests(), asio::detached);
  }
}

void WriteStats(const Options& opt, const Stats& stats) {
  if (opt.stats_file.empty()) return;
  std::string tmp = opt.stats_file + ".tmp";
  std::ofstream(tmp) << stats.Json();
  std::rename(tmp.c_str(), opt.stats_file.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "s3-front: latency, per-connection bandwidth and request counters in front "
      "of an S3 server"};
  app.add_option("--listen", opt.listen, "HOST:PORT to listen on (port 0: a free one)");
  app.add_option("--upstream", opt.upstream, "HOST:PORT of the S3 server")->required();
  app.add_option("--latency-ms", opt.latency_ms, "delay before each request is forwarded");
  app.add_option("--conn-mbps", opt.conn_mbps,
                 "cap per connection and direction, MB/s (10^6 B); 0: none");
  app.add_option("--stats-file", opt.stats_file, "counters as JSON, on SIGUSR1 and at exit");
  CLI11_PARSE(app, argc, argv);
  try {
    asio::io_context io(1);
    tcp::endpoint upstream = Resolve(io, opt.upstream);
    tcp::acceptor acceptor(io, Resolve(io, opt.listen));
    Stats stats;
    tcp::endpoint at = acceptor.local_endpoint();
    std::cout << "s3-front: listening on " << at.address().to_string() << ":" << at.port()
              << std::endl;
    asio::co_spawn(io, Accept(acceptor, opt, upstream, stats), asio::detached);
    asio::signal_set signals(io, SIGINT, SIGTERM, SIGUSR1);
    std::function<void(const asio::error_code&, int)> on_signal = [&](auto ec, int sig) {
      if (ec) return;
      WriteStats(opt, stats);
      if (sig == SIGUSR1)
        signals.async_wait(on_signal);
      else
        io.stop();
    };
    signals.async_wait(on_signal);
    io.run();
    std::cerr << "s3-front: " << stats.Json();
  } catch (const std::exception& e) {
    std::cerr << "s3-front: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
