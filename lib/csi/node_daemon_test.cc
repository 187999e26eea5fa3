// ControlNodeDaemon on the wire: the request lines it sends and how it reads the replies,
// against a scripted daemon on a real unix socket.
#include "csi/node_daemon.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "testing/testing.h"

namespace portal::csi {
namespace {

// Answers one request per connection with the next scripted reply; records the requests.
class ScriptedDaemon {
 public:
  ScriptedDaemon(std::string path, std::vector<std::string> replies)
      : path_(std::move(path)), replies_(std::move(replies)) {
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(listen(fd_, 4) == 0);
    thread_ = std::thread([this] {
      for (const auto& reply : replies_) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::string line;
        char ch;
        while (read(c, &ch, 1) == 1 && ch != '\n') line.push_back(ch);
        requests.push_back(line);
        const std::string out = reply + "\n";
        (void)!write(c, out.data(), out.size());
        close(c);
      }
    });
  }
  ~ScriptedDaemon() {
    thread_.join();
    close(fd_);
  }
  std::vector<std::string> requests;

 private:
  std::string path_;
  std::vector<std::string> replies_;
  int fd_ = -1;
  std::thread thread_;
};

TEST_CASE("csi node daemon client: device.* and volume.* requests and replies", "[csi]") {
  portal::testing::TempDir dir;
  const std::string sock = dir.Join("portalbd.sock");
  std::vector<std::string> requests;
  {
    ScriptedDaemon daemon(
        sock,
        {R"({"ok":true,"volume":{"name":"db","fenced":false}})",
         R"({"ok":true,"device":{"path":"/dev/nbd2","volume":"db","size_bytes":1048576,"read_only":true,"connected":true}})",
         R"({"ok":true,"devices":[{"path":"/dev/nbd2","volume":"db","size_bytes":1048576,"read_only":false,"connected":false}]})",
         R"({"ok":false,"error":{"code":"not_found","message":"no volume named 'x'"}})",
         R"({"ok":true,"detached":false})",
         R"({"ok":false,"error":{"code":"not_found","message":"volume 'db' is not served"}})",
         R"({"ok":false,"error":{"code":"busy","message":"1 client attached"}})",
         R"({"ok":true,"volume":{"name":"db","fenced":true}})"});
    ControlNodeDaemon client(DaemonEndpoint{sock, 5000});
    CHECK(client.Open("db").ok());
    auto d = client.Attach("db", /*read_only=*/true);
    REQUIRE(d.ok());
    CHECK(d->path == "/dev/nbd2");
    CHECK(d->volume == "db");
    CHECK(d->size_bytes == 1048576);
    CHECK(d->read_only);
    auto list = client.List();
    REQUIRE(list.ok());
    REQUIRE(list->size() == 1);
    CHECK_FALSE((*list)[0].connected);
    CHECK(client.Attach("x", false).status().IsNotFound());
    CHECK(client.Detach("db").ok());
    CHECK(client.Release("db").ok());  // not served here: nothing to release
    CHECK(client.Release("db").code() == Status::Code::kBusy);
    auto fenced = client.Fenced("db");
    REQUIRE(fenced.ok());
    CHECK(*fenced);
    requests = daemon.requests;
  }
  CHECK(requests ==
        std::vector<std::string>{
            R"({"name":"db","op":"volume.open"})",
            R"({"op":"device.attach","read_only":true,"volume":"db"})", R"({"op":"device.list"})",
            R"({"op":"device.attach","volume":"x"})", R"({"op":"device.detach","volume":"db"})",
            R"({"name":"db","op":"volume.release"})", R"({"name":"db","op":"volume.release"})",
            R"({"name":"db","op":"volume.get"})"});
}

TEST_CASE("csi node daemon client: no daemon is UNAVAILABLE", "[csi]") {
  portal::testing::TempDir dir;
  ControlNodeDaemon client(DaemonEndpoint{dir.Join("none.sock"), 1000});
  CHECK(client.List().status().IsUnavailable());
}

}  // namespace
}  // namespace portal::csi
