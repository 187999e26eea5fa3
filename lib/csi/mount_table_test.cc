#include "csi/mount_table.h"

#include <catch2/catch.hpp>

namespace portal::csi {
namespace {

TEST_CASE("csi mountinfo: fields, escapes, binds and the mount on top", "[csi]") {
  const auto mounts = ParseMountInfo(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "30 22 43:0 / /var/lib/kubelet/staging\\040dir rw,noatime shared:5 - ext4 /dev/nbd0 rw\n"
      "31 22 43:0 / /pods/p1/mount ro,relatime shared:5 - ext4 /dev/nbd0 rw\n"
      "32 22 0:5 /nbd1 /pods/p2/dev rw,nosuid - devtmpfs udev rw,size=4k\n"
      "garbage line\n"
      "33 22 43:0 / /pods/p1/mount rw master:5 - ext4 /dev/nbd0 rw\n");
  REQUIRE(mounts.size() == 5);
  CHECK(mounts[1].mount_point == "/var/lib/kubelet/staging dir");
  CHECK(mounts[1].source == "/dev/nbd0");
  CHECK(mounts[1].fs_type == "ext4");
  CHECK(mounts[2].read_only());
  CHECK_FALSE(mounts[1].read_only());

  const MountEntry* top = MountAt(mounts, "/pods//p1/mount/");
  REQUIRE(top != nullptr);
  CHECK_FALSE(top->read_only());  // the later mount is the visible one
  CHECK(MountAt(mounts, "pods/p1/mount") == nullptr);
  CHECK(MountAt(mounts, "/pods/p1") == nullptr);

  const MountEntry* dev = MountAt(mounts, "/pods/p2/dev");
  REQUIRE(dev != nullptr);
  CHECK(IsDeviceBind(*dev, "/dev/nbd1"));
  CHECK(MountShowsDevice(*dev, "/dev/nbd1"));
  CHECK_FALSE(IsDeviceBind(*dev, "/dev/nbd10"));
  CHECK_FALSE(MountShowsDevice(*top, "/dev/nbd1"));
  CHECK(MountShowsDevice(*top, "/dev/nbd0"));
}

}  // namespace
}  // namespace portal::csi
