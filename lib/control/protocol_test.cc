// Byte-exact tests of the control protocol: request parsing, reply encoding, line framing.
#include "control/protocol.h"

#include <catch2/catch.hpp>

namespace portal::control {
namespace {

ErrorReply ParseError(std::string_view line, std::string* id = nullptr) {
  std::string ignored;
  auto r = ParseRequest(line, id ? id : &ignored);
  REQUIRE(std::holds_alternative<ErrorReply>(r));
  return std::get<ErrorReply>(r);
}

Request Parse(std::string_view line) {
  std::string id;
  auto r = ParseRequest(line, &id);
  if (auto* e = std::get_if<ErrorReply>(&r)) FAIL(e->code << ": " << e->message);
  return std::get<Request>(r);
}

SnapshotEntry Snap() {
  SnapshotEntry s;
  s.name = "snap1";
  s.id = "0c6e2a5e-46a1-4b8e-9d43-7d7f3e0b1c2a";
  s.created_ns = 1767755083123456789;
  s.size_bytes = 1 << 30;
  s.pinned_bytes = 5 << 20;
  s.attached = 1;
  return s;
}

constexpr std::string_view kSnapJson =
    R"({"name":"snap1","id":"0c6e2a5e-46a1-4b8e-9d43-7d7f3e0b1c2a",)"
    R"("created":"2026-01-07T03:04:43.123456Z","created_ns":1767755083123456789,)"
    R"("size_bytes":1073741824,"pinned_bytes":5242880,"attached":1})";

TEST_CASE("control requests parse for every op", "[control]") {
  Request r = Parse(R"({"op":"snapshot.create","name":"snap1"})");
  CHECK(r.op == Op::kSnapshotCreate);
  CHECK(r.name == "snap1");
  CHECK(Parse(R"({"op":"snapshot.list"})").op == Op::kSnapshotList);
  CHECK(Parse(R"({"op":"snapshot.get","name":"a"})").op == Op::kSnapshotGet);
  CHECK(Parse(R"({"op":"snapshot.delete","name":"a"})").op == Op::kSnapshotDelete);
  CHECK(Parse(R"({"name":"a","op":"snapshot.restore"})").op == Op::kSnapshotRestore);
  CHECK(Parse(R"(  {"op":"status"}  )").op == Op::kStatus);
}

TEST_CASE("control request ids are echoed verbatim, string or integer", "[control]") {
  std::string id;
  auto r = ParseRequest(R"({"op":"status","id":"abc"})", &id);
  REQUIRE(std::holds_alternative<Request>(r));
  CHECK(id == R"("abc")");
  CHECK(EncodeReply(OkReply{}, id) == "{\"ok\":true,\"id\":\"abc\"}\n");
  r = ParseRequest(R"({"op":"status","id":-42})", &id);
  CHECK(id == "-42");
  // Even a request that is otherwise bad carries its id back.
  ErrorReply e = ParseError(R"({"op":"nope","id":7})", &id);
  CHECK(id == "7");
  CHECK(EncodeReply(e, id).starts_with(R"({"ok":false,"id":7,"error":{"code":"bad_request",)"));
  // An id that is neither is itself the error, and is not echoed.
  e = ParseError(R"({"op":"status","id":[1]})", &id);
  CHECK(id.empty());
  CHECK(e.message == "request field 'id' must be a string or an integer");
}

TEST_CASE("malformed control requests are bad_request with a message", "[control]") {
  struct Case {
    std::string_view line;
    std::string_view message;
  } cases[] = {
      {"{", "request is not valid JSON"},
      {"hello", "request is not valid JSON"},
      {"[1,2]", "request is not a JSON object"},
      {"\"status\"", "request is not a JSON object"},
      {"{}", "request field 'op' (a string) is missing"},
      {R"({"op":7})", "request field 'op' (a string) is missing"},
      {R"({"op":"status","extra":1})", "unknown request field 'extra'"},
      {R"({"op":"status","name":"x"})", "op 'status' takes no name"},
      {R"({"op":"snapshot.list","name":"x"})", "op 'snapshot.list' takes no name"},
      {R"({"op":"snapshot.get"})", "op 'snapshot.get' needs a 'name' (a string)"},
      {R"({"op":"snapshot.create","name":5})", "op 'snapshot.create' needs a 'name' (a string)"},
      {R"({"op":"SnapshotCreate"})",
       "unknown op 'SnapshotCreate' (known: snapshot.create, snapshot.list, snapshot.get, "
       "snapshot.delete, snapshot.restore, status, volume.create, volume.list, volume.get, "
       "volume.delete, volume.resize, volume.open, volume.release, volume.clone, "
       "device.attach, device.detach, device.list, volume.inspect, volume.publish, "
       "volume.unpublish, node.get)"},
      {R"({"op":"volume.create","name":"a"})",
       "op 'volume.create' needs 'size_bytes' (a positive integer)"},
      {R"({"op":"volume.create","name":"a","size_bytes":0})",
       "request field 'size_bytes' must be a positive integer"},
      {R"({"op":"volume.create","name":"a","size_bytes":-4096})",
       "request field 'size_bytes' must be a positive integer"},
      {R"({"op":"volume.get","name":"a","size_bytes":4096})",
       "op 'volume.get' takes no size_bytes"},
      {R"({"op":"volume.list","name":"a"})", "op 'volume.list' takes no name"},
      {R"({"op":"volume.get"})", "op 'volume.get' needs a 'name' (a string)"},
      {R"({"op":"volume.get","name":"a","volume":"b"})", "op 'volume.get' takes no volume"},
      {R"({"op":"status","volume":"b"})", "op 'status' takes no volume"},
      {R"({"op":"snapshot.list","volume":7})", "request field 'volume' must be a string"},
      {R"({"op":"volume.create","name":"a","size_bytes":4096,"allow_shrink":true})",
       "op 'volume.create' takes no allow_shrink"},
      {R"({"op":"volume.resize","name":"a","size_bytes":4096,"allow_shrink":1})",
       "request field 'allow_shrink' must be a boolean"},
      {R"({"op":"volume.clone","name":"b","snapshot":"s"})",
       "op 'volume.clone' needs a 'source' (a string)"},
      {R"({"op":"volume.clone","name":"b","source":"a"})",
       "op 'volume.clone' needs a 'snapshot' (a string)"},
      {R"({"op":"volume.clone","name":"b","source":1,"snapshot":"s"})",
       "op 'volume.clone' needs a 'source' (a string)"},
      {R"({"op":"volume.create","name":"b","size_bytes":4096,"source":"a"})",
       "op 'volume.create' takes no source"},
      {R"({"op":"snapshot.get","name":"b","snapshot":"s"})", "op 'snapshot.get' takes no snapshot"},
  };
  for (const auto& c : cases) {
    INFO(c.line);
    ErrorReply e = ParseError(c.line);
    CHECK(e.code == "bad_request");
    CHECK(e.message == c.message);
  }
}

// Names reach the handler unjudged; it applies the volume's rule (daemon/control_handler_test.cc).
TEST_CASE("control requests carry any snapshot name string to the handler", "[control]") {
  CHECK(Parse(R"({"op":"snapshot.create","name":""})").name.empty());
  CHECK(Parse(R"({"op":"snapshot.get","name":"portalbd@x"})").name == "portalbd@x");
  CHECK(Parse(R"({"op":"snapshot.create","name":")" + std::string(129, 'n') + "\"}").name.size() ==
        129);
}

TEST_CASE("a control request longer than the bound is request_too_long", "[control]") {
  std::string line = R"({"op":"status","pad":")" + std::string(kMaxRequestBytes, 'x') + "\"}";
  ErrorReply e = ParseError(line);
  CHECK(e.code == "request_too_long");
  CHECK(e.message == "request is longer than 16384 bytes");
}

TEST_CASE("control replies encode byte for byte", "[control]") {
  CHECK(EncodeReply(OkReply{}) == "{\"ok\":true}\n");
  CHECK(EncodeReply(SnapshotReply{Snap()}) ==
        "{\"ok\":true,\"snapshot\":" + std::string(kSnapJson) + "}\n");
  CHECK(EncodeReply(SnapshotListReply{}) == "{\"ok\":true,\"snapshots\":[]}\n");
  CHECK(EncodeReply(SnapshotListReply{{Snap(), Snap()}}, "1") ==
        "{\"ok\":true,\"id\":1,\"snapshots\":[" + std::string(kSnapJson) + "," +
            std::string(kSnapJson) + "]}\n");
  CHECK(EncodeReply(ErrorReply{"not_found", "no snapshot named 'x'"}) ==
        R"({"ok":false,"error":{"code":"not_found","message":"no snapshot named 'x'"}})"
        "\n");
  // Bytes that are not UTF-8 (a store's message could hold them) never throw.
  CHECK(EncodeReply(ErrorReply{"io_error", "bad \xff byte"}) ==
        "{\"ok\":false,\"error\":{\"code\":\"io_error\",\"message\":\"bad \xEF\xBF\xBD byte\"}}\n");
}

TEST_CASE("the control status reply encodes every field and decodes back", "[control]") {
  DaemonStatus s;
  s.version = "0.1.0";
  s.size_bytes = 1 << 30;
  s.block_size = 4096;
  s.storage_url = "s3://bucket/prefix";
  s.nbd_address = "127.0.0.1:10809";
  s.volume_uuid = "u";
  s.epoch = 3;
  s.fenced = true;
  s.manifest_number = 12;
  s.objects_stored = 5;
  s.bytes_stored = 1000;
  s.live_bytes = 800;
  s.segments = 4;
  s.segment_bytes = 900;
  s.map_ssts = 1;
  s.map_bytes = 100;
  s.buffer_bytes = 8192;
  s.max_unflushed_bytes = 1 << 28;
  s.cache_bytes = 10;
  s.cache_capacity_bytes = 20;
  s.cache_hits = 30;
  s.cache_misses = 40;
  s.write_stalls = 2;
  s.shadowed_bytes = 4096;
  s.full_compactions = 3;
  s.corrupt_refetches = 2;
  s.snapshots = 7;
  s.nbd_connections = 1;
  s.store_failing_since = "2026-01-07T02:58:02.656272Z";
  s.store_failed_attempts = 9;
  s.store_error = "Unavailable: no space left on device";
  s.disk_cache_enabled = true;
  s.disk_cache_bytes = 11;
  s.disk_cache_capacity_bytes = 21;
  s.disk_cache_hits = 31;
  s.disk_cache_misses = 41;
  s.disk_cache_damaged = 1;
  s.read_ahead_gets = 5;
  s.read_ahead_bytes = 40 << 20;
  s.read_ahead_hits = 600;
  s.read_ahead_wasted = 4;
  s.read_ahead_failed = 1;
  s.requests = {{"PUT_IF_ABSENT", 6, 1, 1016}, {"GET", 3, 0, 12}};
  const std::string line = EncodeReply(StatusReply{s});
  CHECK(
      line ==
      R"({"ok":true,"status":{"version":"0.1.0","size_bytes":1073741824,"block_size":4096,)"
      R"("storage_url":"s3://bucket/prefix","nbd_address":"127.0.0.1:10809","volume_uuid":"u",)"
      R"("epoch":3,"fenced":true,"manifest":12,"objects_stored":5,"bytes_stored":1000,"live_bytes":800,)"
      R"("segments":4,"segment_bytes":900,"map_ssts":1,"map_bytes":100,"buffer_bytes":8192,)"
      R"("max_unflushed_bytes":268435456,"cache_bytes":10,"cache_capacity_bytes":20,)"
      R"("cache_hits":30,"cache_misses":40,"write_stalls":2,)"
      R"("shadowed_bytes":4096,"full_compactions":3,"corrupt_refetches":2,"snapshots":7,)"
      R"("nbd_connections":1,)"
      R"("store_failing_since":"2026-01-07T02:58:02.656272Z","store_failed_attempts":9,)"
      R"("store_error":"Unavailable: no space left on device",)"
      R"("disk_cache_enabled":true,"disk_cache_bytes":11,"disk_cache_capacity_bytes":21,)"
      R"("disk_cache_hits":31,"disk_cache_misses":41,"disk_cache_damaged":1,)"
      R"("read_ahead_gets":5,"read_ahead_bytes":41943040,"read_ahead_hits":600,)"
      R"("read_ahead_wasted":4,"read_ahead_failed":1,)"
      R"("requests":{"PUT_IF_ABSENT":{"calls":6,"errors":1,"bytes":1016},)"
      R"("GET":{"calls":3,"errors":0,"bytes":12}}}})"
      "\n");
  auto back = DecodeReply(std::string_view(line).substr(0, line.size() - 1));
  REQUIRE(back.ok());
  REQUIRE(std::holds_alternative<StatusReply>(*back));
  CHECK(std::get<StatusReply>(*back).status == s);  // request kinds keep their order

  // An older daemon's reply, without the store_* fields: a healthy store.
  std::string old = line.substr(0, line.size() - 1);
  const size_t from = old.find(R"("store_failing_since")");
  const size_t to = old.find(R"("requests")");
  REQUIRE(from != std::string::npos);
  old.erase(from, to - from);
  auto decoded = DecodeReply(old);
  REQUIRE(decoded.ok());
  const DaemonStatus& o = std::get<StatusReply>(*decoded).status;
  CHECK(o.store_failing_since.empty());
  CHECK(o.store_error.empty());
  CHECK(o.nbd_connections == 1);
  CHECK(o.read_ahead_gets == 0);  // nor read_ahead_*
}

TEST_CASE("control replies decode, and bad replies are Corruption", "[control]") {
  auto snap = DecodeReply("{\"ok\":true,\"snapshot\":" + std::string(kSnapJson) + "}");
  REQUIRE(snap.ok());
  const auto& s = std::get<SnapshotReply>(*snap).snapshot;
  CHECK(s.name == "snap1");
  CHECK(s.created_ns == 1767755083123456789);
  CHECK(s.pinned_bytes == 5u << 20);
  CHECK(s.attached == 1);
  auto err = DecodeReply(R"({"ok":false,"error":{"code":"busy","message":"m"}})");
  REQUIRE(err.ok());
  CHECK(std::get<ErrorReply>(*err).code == "busy");
  CHECK(std::holds_alternative<OkReply>(*DecodeReply(R"({"ok":true,"id":"x"})")));
  for (std::string_view bad :
       {"", "[]", "{}", R"({"ok":1})", R"({"ok":false})", R"({"ok":true,"snapshot":{"name":"x"}})",
        R"({"ok":true,"snapshots":{}})", R"({"ok":true,"status":[]})"}) {
    INFO(bad);
    auto r = DecodeReply(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsCorruption());
  }
}

TEST_CASE("a reply whose counts do not fit their fields is Corruption", "[control]") {
  // "attached" is an int: 2^31 read back as -2^31, which portalctl then printed and
  // which no longer encodes as the unsigned count the protocol says it is.
  std::string snap(kSnapJson);
  snap.replace(snap.find("\"attached\":1"), 12, "\"attached\":2147483648");
  auto r = DecodeReply("{\"ok\":true,\"snapshot\":" + snap + "}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().IsCorruption());
}

TEST_CASE("control requests encode byte for byte", "[control]") {
  CHECK(EncodeRequest(Request{Op::kSnapshotCreate, "snap1", ""}) ==
        "{\"op\":\"snapshot.create\",\"name\":\"snap1\"}\n");
  CHECK(EncodeRequest(Request{Op::kSnapshotList, "ignored", "3"}) ==
        "{\"op\":\"snapshot.list\",\"id\":3}\n");
  CHECK(EncodeRequest(Request{Op::kStatus, "", ""}) == "{\"op\":\"status\"}\n");
}

TEST_CASE("status codes map to snake_case error codes", "[control]") {
  CHECK(ErrorFromStatus(Status::NotFound("m")).code == "not_found");
  CHECK(ErrorFromStatus(Status::Busy("m")).code == "busy");
  CHECK(ErrorFromStatus(Status::InvalidArgument("m")).code == "invalid_argument");
  CHECK(ErrorFromStatus(Status::IOError("m")).code == "io_error");
  CHECK(ErrorFromStatus(Status::Unavailable("m")).code == "unavailable");
  CHECK(ErrorFromStatus(Status::PreconditionFailed("m")).code == "precondition_failed");
  CHECK(ErrorFromStatus(Status::Shutdown("m")).message == "m");
}

std::vector<LineReader::Line> Drain(LineReader& r) {
  std::vector<LineReader::Line> out;
  while (auto l = r.Next()) out.push_back(std::move(*l));
  return out;
}

TEST_CASE("LineReader splits lines across feeds and strips CR", "[control]") {
  LineReader r(16);
  r.Feed("ab");
  CHECK(Drain(r).empty());
  r.Feed("c\r\nde\n\n\r\nf");  // blank lines are skipped
  auto lines = Drain(r);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].text == "abc");
  CHECK(lines[1].text == "de");
  CHECK(r.buffered() == 1);
  r.Finish();  // a last line without its newline still counts
  lines = Drain(r);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].text == "f");
}

TEST_CASE("LineReader reports a too-long line once and resynchronizes", "[control]") {
  LineReader r(8);
  r.Feed("12345678\n");              // exactly the bound: fine
  r.Feed("123456789");               // one more: too long, no newline yet
  r.Feed(std::string(100000, 'x'));  // still inside it: nothing buffered
  CHECK(r.buffered() == 0);
  r.Feed("yy\nok\n");
  auto lines = Drain(r);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].text == "12345678");
  CHECK(lines[1].too_long);
  CHECK(lines[2].text == "ok");
  // Too long within one feed, newline included.
  r.Feed("abcdefghij\nz\n");
  lines = Drain(r);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].too_long);
  CHECK(lines[1].text == "z");
  r.Feed("0123456789");
  r.Finish();  // too long and unterminated: reported once, nothing more
  lines = Drain(r);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].too_long);
}

TEST_CASE("volume requests parse and encode with their fields", "[control]") {
  std::string id;
  auto parsed = ParseRequest(
      R"({"op":"volume.resize","name":"db","size_bytes":8589934592,"allow_shrink":true})", &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  const Request& r = std::get<Request>(parsed);
  CHECK(r.op == Op::kVolumeResize);
  CHECK(r.name == "db");
  CHECK(r.size_bytes == 8589934592ull);
  CHECK(r.allow_shrink);
  CHECK(EncodeRequest(r) ==
        "{\"op\":\"volume.resize\",\"name\":\"db\",\"size_bytes\":8589934592,"
        "\"allow_shrink\":true}\n");

  parsed = ParseRequest(R"({"op":"snapshot.create","name":"s1","volume":"db"})", &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  CHECK(std::get<Request>(parsed).volume == "db");
  CHECK(EncodeRequest(std::get<Request>(parsed)) ==
        "{\"op\":\"snapshot.create\",\"name\":\"s1\",\"volume\":\"db\"}\n");
  Request list{Op::kVolumeList, "", ""};
  CHECK(EncodeRequest(list) == "{\"op\":\"volume.list\"}\n");
  Request create{Op::kVolumeCreate, "db", "", "", 1ull << 30, false};
  CHECK(EncodeRequest(create) ==
        "{\"op\":\"volume.create\",\"name\":\"db\",\"size_bytes\":1073741824}\n");
  for (Op op : {Op::kVolumeCreate, Op::kVolumeList, Op::kVolumeGet, Op::kVolumeDelete,
                Op::kVolumeResize, Op::kVolumeOpen, Op::kVolumeRelease}) {
    CHECK(IsVolumeOp(op));
    CHECK(OpName(op).starts_with("volume."));
  }
  CHECK_FALSE(IsVolumeOp(Op::kSnapshotList));

  parsed =
      ParseRequest(R"({"op":"volume.clone","name":"db2","source":"db","snapshot":"gold"})", &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  const Request& c = std::get<Request>(parsed);
  CHECK(c.op == Op::kVolumeClone);
  CHECK(IsVolumeOp(c.op));
  CHECK(OpName(c.op) == "volume.clone");
  CHECK(c.name == "db2");
  CHECK(c.source == "db");
  CHECK(c.snapshot == "gold");
  CHECK(EncodeRequest(c) ==
        "{\"op\":\"volume.clone\",\"name\":\"db2\",\"source\":\"db\",\"snapshot\":\"gold\"}\n");

  // volume.inspect: the name is optional; volume.create takes an optional block size.
  parsed = ParseRequest(R"({"op":"volume.inspect"})", &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  CHECK(std::get<Request>(parsed).op == Op::kVolumeInspect);
  CHECK(std::get<Request>(parsed).name.empty());
  CHECK(EncodeRequest(std::get<Request>(parsed)) == "{\"op\":\"volume.inspect\"}\n");
  parsed = ParseRequest(R"({"op":"volume.inspect","name":"db"})", &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  CHECK(EncodeRequest(std::get<Request>(parsed)) ==
        "{\"op\":\"volume.inspect\",\"name\":\"db\"}\n");
  parsed = ParseRequest(R"({"op":"volume.create","name":"db","size_bytes":65536,"block_size":8192})",
                        &id);
  REQUIRE(std::holds_alternative<Request>(parsed));
  CHECK(std::get<Request>(parsed).block_size == 8192);
  CHECK(EncodeRequest(std::get<Request>(parsed)) ==
        "{\"op\":\"volume.create\",\"name\":\"db\",\"size_bytes\":65536,\"block_size\":8192}\n");
  for (const char* bad : {R"({"op":"volume.resize","name":"db","size_bytes":8192,"block_size":512})",
                          R"({"op":"volume.create","name":"db","size_bytes":8192,"block_size":0})",
                          R"({"op":"volume.inspect","name":7})"}) {
    parsed = ParseRequest(bad, &id);
    REQUIRE(std::holds_alternative<ErrorReply>(parsed));
    CHECK(std::get<ErrorReply>(parsed).code == kBadRequest);
  }
}

TEST_CASE("volume replies round-trip", "[control]") {
  VolumeEntry a{"portalbd", true, 1ull << 30, 4096, 8192, 12345, 2, 1, 7, false, "uuid-a", "", ""};
  VolumeEntry b{"db", false, 2ull << 30, 4096, 0, 0, 0, 0, 1, true, "uuid-b", "base", "golden"};
  auto one = DecodeReply(EncodeReply(VolumeReply{b}));
  REQUIRE(one.ok());
  REQUIRE(std::holds_alternative<VolumeReply>(*one));
  CHECK(std::get<VolumeReply>(*one).volume == b);
  const std::string line = EncodeReply(VolumeListReply{{a, b}}, "9");
  CHECK(line.find("\"clone_of\":null") != std::string::npos);
  CHECK(line.find("\"clone_of\":{\"volume\":\"base\",\"snapshot\":\"golden\"}") !=
        std::string::npos);
  auto list = DecodeReply(line.substr(0, line.size() - 1));
  REQUIRE(list.ok());
  REQUIRE(std::holds_alternative<VolumeListReply>(*list));
  CHECK(std::get<VolumeListReply>(*list).volumes == std::vector<VolumeEntry>{a, b});
  VolumeEntry inspected = b;
  inspected.snapshot_list = std::vector<SnapshotEntry>{{"s", "id", 5, 4096, 0, 0}};
  inspected.owner = OwnerEntry{"node-a", "10.0.0.5:7070", 7};
  auto with_list = DecodeReply(EncodeReply(VolumeListReply{{inspected}}));
  REQUIRE(with_list.ok());
  CHECK(std::get<VolumeListReply>(*with_list).volumes[0] == inspected);
  CHECK(EncodeReply(VolumeReply{b}).find("snapshot_list") == std::string::npos);
  auto empty = DecodeReply(EncodeReply(VolumeListReply{}));
  REQUIRE(empty.ok());
  CHECK(std::get<VolumeListReply>(*empty).volumes.empty());
}

}  // namespace
}  // namespace portal::control

namespace portal::control {
namespace {

TEST_CASE("device requests parse with their fields and refuse misplaced ones", "[control]") {
  Request a = Parse(R"({"op":"device.attach","volume":"db"})");
  CHECK(a.op == Op::kDeviceAttach);
  CHECK(a.volume == "db");
  CHECK(a.device.empty());
  CHECK_FALSE(a.read_only);
  a = Parse(R"({"op":"device.attach","volume":"db","device":"/dev/nbd3","read_only":true})");
  CHECK(a.device == "/dev/nbd3");
  CHECK(a.read_only);
  Request d = Parse(R"({"op":"device.detach","device":"/dev/nbd3"})");
  CHECK(d.op == Op::kDeviceDetach);
  CHECK(d.device == "/dev/nbd3");
  CHECK(Parse(R"({"op":"device.detach","volume":"db"})").volume == "db");
  CHECK(Parse(R"({"op":"device.list"})").op == Op::kDeviceList);

  CHECK(ParseError(R"({"op":"device.attach"})").message ==
        "op 'device.attach' needs a 'volume' (a volume name)");
  CHECK(ParseError(R"({"op":"device.detach"})").message ==
        "op 'device.detach' needs exactly one of 'device' and 'volume'");
  CHECK(ParseError(R"({"op":"device.detach","device":"/dev/nbd0","volume":"db"})").message ==
        "op 'device.detach' needs exactly one of 'device' and 'volume'");
  CHECK(ParseError(R"({"op":"device.list","volume":"db"})").message ==
        "op 'device.list' takes no volume");
  CHECK(ParseError(R"({"op":"device.attach","volume":"db","read_only":1})").message ==
        "request field 'read_only' must be a boolean");
  CHECK(ParseError(R"({"op":"device.attach","volume":"db","device":""})").code == kBadRequest);
  CHECK(ParseError(R"({"op":"device.detach","name":"x","volume":"db"})").message ==
        "op 'device.detach' takes no name");
  CHECK(ParseError(R"({"op":"volume.get","name":"v","device":"/dev/nbd0"})").message ==
        "op 'volume.get' takes no device");
  CHECK(ParseError(R"({"op":"snapshot.list","read_only":true})").message ==
        "op 'snapshot.list' takes no read_only");

  CHECK(EncodeRequest(a) ==
        "{\"op\":\"device.attach\",\"volume\":\"db\",\"device\":\"/dev/nbd3\",\"read_only\":true}"
        "\n");
  CHECK(EncodeRequest(d) == "{\"op\":\"device.detach\",\"device\":\"/dev/nbd3\"}\n");
}

TEST_CASE("device replies encode byte for byte and decode back", "[control]") {
  DeviceEntry e{"/dev/nbd0", "db", 1 << 30, false, true};
  const std::string one = EncodeReply(DeviceReply{e});
  CHECK(one ==
        "{\"ok\":true,\"device\":{\"path\":\"/dev/nbd0\",\"volume\":\"db\","
        "\"size_bytes\":1073741824,\"read_only\":false,\"connected\":true}}\n");
  auto r = DecodeReply(std::string_view(one).substr(0, one.size() - 1));
  REQUIRE(r.ok());
  REQUIRE(std::holds_alternative<DeviceReply>(*r));
  CHECK(std::get<DeviceReply>(*r).device == e);

  const std::string list = EncodeReply(DeviceListReply{{e, e}});
  r = DecodeReply(std::string_view(list).substr(0, list.size() - 1));
  REQUIRE(r.ok());
  CHECK(std::get<DeviceListReply>(*r).devices == std::vector<DeviceEntry>{e, e});

  CHECK(EncodeReply(DeviceDetachReply{}) == "{\"ok\":true,\"detached\":false}\n");
  const std::string det = EncodeReply(DeviceDetachReply{true, e});
  r = DecodeReply(std::string_view(det).substr(0, det.size() - 1));
  REQUIRE(r.ok());
  REQUIRE(std::holds_alternative<DeviceDetachReply>(*r));
  CHECK(std::get<DeviceDetachReply>(*r).detached);
  CHECK(std::get<DeviceDetachReply>(*r).device == e);

  CHECK(DecodeReply(R"({"ok":true,"device":{"path":"/dev/nbd0"}})").status().IsCorruption());
  CHECK(DecodeReply(R"({"ok":true,"detached":"yes"})").status().IsCorruption());
}

}  // namespace
}  // namespace portal::control
