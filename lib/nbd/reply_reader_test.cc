#include <catch2/catch.hpp>

#include <map>

#include <fmt/format.h>

#include "nbd/reply_reader.h"
#include "testing/nbd_script.h"
#include "util/coding.h"

namespace portal::nbd {
namespace {

using testing::Chunk;
using testing::SimpleReply;

// Records every callback as a line.
struct Log final : ReplyReader::Handler {
  std::map<uint64_t, uint32_t> read_lengths;  // cookies of READs in flight
  std::vector<std::string> events;
  std::string data;

  Result<uint32_t> SimpleReplyDataLength(uint64_t cookie) override {
    auto it = read_lengths.find(cookie);
    if (it == read_lengths.end()) return Status::Corruption("unknown cookie");
    return it->second;
  }
  void OnData(uint64_t cookie, bool absolute, uint64_t offset,
              std::span<const uint8_t> bytes) override {
    data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (events.empty() || !events.back().starts_with("data")) {
      events.push_back(fmt::format("data {} {} {}", cookie, absolute ? "abs" : "rel", offset));
    }
  }
  void OnHole(uint64_t cookie, uint64_t offset, uint32_t length) override {
    events.push_back(fmt::format("hole {} {} {}", cookie, offset, length));
  }
  void OnExtent(uint64_t cookie, uint32_t ctx, uint32_t length, uint32_t flags) override {
    events.push_back(fmt::format("extent {} {} {} {}", cookie, ctx, length, flags));
  }
  void OnError(uint64_t cookie, uint32_t error, std::string_view message) override {
    events.push_back(fmt::format("error {} {} {}", cookie, error, message));
  }
  void OnDone(uint64_t cookie) override { events.push_back(fmt::format("done {}", cookie)); }
};

std::string BE64(uint64_t v) {
  std::string s;
  PutBE64(&s, v);
  return s;
}
std::string BE16(uint16_t v) {
  std::string s;
  PutBE16(&s, v);
  return s;
}
std::string BE32(uint32_t v) {
  std::string s;
  PutBE32(&s, v);
  return s;
}

// Feeds `bytes` in pieces of `step` bytes.
Log Run(const std::string& bytes, bool structured, size_t step, std::map<uint64_t, uint32_t> reads,
        Status* error = nullptr) {
  Log log;
  log.read_lengths = std::move(reads);
  ReplyReader r(log, structured);
  for (size_t pos = 0; pos < bytes.size(); pos += step) {
    auto in = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()) + pos,
                                       std::min(step, bytes.size() - pos));
    auto used = r.Consume(in);
    if (!used.ok()) {
      if (!error) FAIL(used.status().ToString());
      *error = used.status();
      return log;
    }
    REQUIRE(*used == in.size());
  }
  CHECK(r.idle());
  return log;
}

TEST_CASE("reply reader: simple replies in any split", "[nbd]") {
  std::string bytes = SimpleReply(0, 7, "abcdefgh") + SimpleReply(0, 8) + SimpleReply(5, 9);
  for (size_t step : {1, 3, 16, 17, 1000}) {
    INFO("step " << step);
    Log log = Run(bytes, false, step, {{7, 8}, {8, 0}});
    CHECK(log.data == "abcdefgh");
    CHECK(log.events == std::vector<std::string>{"data 7 rel 0", "done 7", "done 8",
                                                  "error 9 5 ", "done 9"});
  }
}

TEST_CASE("reply reader: structured chunks in any split", "[nbd]") {
  std::string bytes =
      Chunk(0, NBD_REPLY_TYPE_OFFSET_DATA, 1, BE64(4096) + "0123456789") +
      Chunk(0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, BE64(4106) + BE32(100)) +
      Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 1, "") +
      Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 2,
            BE32(1) + BE32(4096) + BE32(0) + BE32(8192) + BE32(3)) +
      Chunk(0, 77, 3, "ignored informational chunk") +
      Chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 3, BE32(28) + BE16(4) + "full") +
      SimpleReply(0, 4);  // simple replies stay legal after structured ones
  for (size_t step : {1, 2, 7, 20, 4096}) {
    INFO("step " << step);
    Log log = Run(bytes, true, step, {{4, 0}});
    CHECK(log.data == "0123456789");
    CHECK(log.events == std::vector<std::string>{
                            "data 1 abs 4096", "hole 1 4106 100", "done 1", "extent 2 1 4096 0",
                            "extent 2 1 8192 3", "done 2", "error 3 28 full", "done 3",
                            "done 4"});
  }
}

TEST_CASE("reply reader: framing errors", "[nbd]") {
  Status st;
  Run("\x12\x34\x56\x78 garbage garbage", true, 100, {}, &st);
  CHECK_THAT(st.message(), Catch::Contains("bad reply magic 0x12345678"));
  st = Status::Ok();
  Run(Chunk(0, NBD_REPLY_TYPE_OFFSET_DATA, 1, "x"), false, 100, {}, &st);  // not negotiated
  CHECK_THAT(st.message(), Catch::Contains("bad reply magic"));
  st = Status::Ok();
  Run(Chunk(0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, BE64(0)), true, 100, {}, &st);
  CHECK_THAT(st.message(), Catch::Contains("OFFSET_HOLE chunk of 8 bytes"));
  st = Status::Ok();
  Run(Chunk(0, NBD_REPLY_TYPE_BLOCK_STATUS, 1, BE32(1) + "abc"), true, 100, {}, &st);
  CHECK_THAT(st.message(), Catch::Contains("BLOCK_STATUS chunk of 7 bytes"));
  st = Status::Ok();
  Run(Chunk(0, NBD_REPLY_TYPE_ERROR, 1, BE32(5) + BE16(9) + "short"), true, 100, {}, &st);
  CHECK_THAT(st.message(), Catch::Contains("error chunk message of 9 bytes"));
  st = Status::Ok();
  Run(SimpleReply(0, 99), false, 100, {}, &st);
  CHECK_THAT(st.message(), Catch::Contains("unknown cookie"));
}

}  // namespace
}  // namespace portal::nbd
