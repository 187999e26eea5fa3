// The device state file: round trip, atomic replacement, and damage reported with the path.
#include "daemon/device_state.h"

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "testing/testing.h"

namespace portal::daemon {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST_CASE("the device state file round-trips, and a missing one is no devices", "[device]") {
  testing::TempDir dir;
  const std::string path = dir.Join("state/devices.json");  // the directory is created
  auto none = LoadDeviceState(path);
  REQUIRE(none.ok());
  CHECK(none->empty());

  std::vector<DeviceRecord> records = {{0, "db", false, DeviceBackend("db")},
                                       {7, "logs", true, DeviceBackend("logs")}};
  REQUIRE(SaveDeviceState(path, records).ok());
  auto back = LoadDeviceState(path);
  REQUIRE(back.ok());
  CHECK(*back == records);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  records.pop_back();
  REQUIRE(SaveDeviceState(path, records).ok());  // replaced, not appended
  back = LoadDeviceState(path);
  REQUIRE(back.ok());
  CHECK(*back == records);
  CHECK(DeviceBackend("db") == "portalbd:db");
}

TEST_CASE("a damaged device state file is Corruption naming the file", "[device]") {
  testing::TempDir dir;
  const std::string path = dir.Join("devices.json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"version\":1,\"devices\":[", "not a JSON object"},
      {"[]", "not a JSON object"},
      {"{\"version\":2,\"devices\":[]}", "unknown version"},
      {"{\"version\":1}", "'devices' is not an array"},
      {"{\"version\":1,\"devices\":[{\"volume\":\"db\",\"read_only\":false,\"backend\":\"b\"}]}",
       "no valid 'index'"},
      {"{\"version\":1,\"devices\":[{\"index\":-1,\"volume\":\"db\",\"read_only\":false,"
       "\"backend\":\"b\"}]}",
       "no valid 'index'"},
      {"{\"version\":1,\"devices\":[{\"index\":0,\"volume\":\"\",\"read_only\":false,"
       "\"backend\":\"b\"}]}",
       "no 'volume'"},
      {"{\"version\":1,\"devices\":[{\"index\":0,\"volume\":\"db\",\"backend\":\"b\"}]}",
       "no 'read_only'"},
      {"{\"version\":1,\"devices\":[{\"index\":0,\"volume\":\"a\",\"read_only\":false,"
       "\"backend\":\"b\"},{\"index\":0,\"volume\":\"b\",\"read_only\":false,\"backend\":\"b\"}]}",
       "device 0 listed twice"},
  };
  for (const auto& [text, why] : cases) {
    INFO(text);
    WriteFile(path, text);
    auto r = LoadDeviceState(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsCorruption());
    CHECK_THAT(r.status().message(), Catch::Contains(path));
    CHECK_THAT(r.status().message(), Catch::Contains(why));
  }
}

}  // namespace
}  // namespace portal::daemon
