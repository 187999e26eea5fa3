// Model-based testing of any BlockDevice against a byte array, with RapidCheck's
// stateful testing (rc::state): random sequences of writes (aligned and not, FUA),
// reads, trims, write-zeroes (+no_hole), flushes, block status and cache, each checked
// against the model; failures shrink to a minimal command sequence.
//
//   rc::check([] { RunBlockDeviceModel(make_device, run); });
//
// `run` drives a Task to completion for the device's executor (inline for MemoryVolume,
// RunSim for simulated devices). Reopen/crash steps are added by suites that support
// them through `extra` commands.
#pragma once

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/block_device.h"
#include "env/task.h"
#include "util/status.h"

namespace portal::testing {

struct DeviceModel {
  std::vector<uint8_t> bytes;
};

struct DeviceUnderTest {
  std::shared_ptr<device::BlockDevice> device;
  // Runs a task to completion and returns its result.
  std::function<Status(Task<Status>)> run;
  std::function<Result<std::vector<device::StatusExtent>>(
      Task<Result<std::vector<device::StatusExtent>>>)>
      run_status;
};

using DeviceCommand = rc::state::Command<DeviceModel, DeviceUnderTest>;

inline uint64_t GenOffset(uint64_t size) {
  // Bias toward block edges, where read-modify-write bugs live.
  return *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, size),
                         rc::gen::map(rc::gen::inRange<uint64_t>(0, size / 4096 + 1),
                                      [size](uint64_t b) { return std::min(size, b * 4096); }),
                         rc::gen::map(rc::gen::inRange<uint64_t>(1, size / 4096 + 1),
                                      [size](uint64_t b) {
                                        return std::min(size - 1, b * 4096 - 1);
                                      }));
}

inline uint64_t GenLength(uint64_t offset, uint64_t size) {
  uint64_t max = size - offset;
  return *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, std::min<uint64_t>(max, 64) + 1),
                         rc::gen::inRange<uint64_t>(0, std::min<uint64_t>(max, 20000) + 1),
                         rc::gen::just(std::min<uint64_t>(max, 4096)),
                         rc::gen::just(max));
}

struct WriteCmd : DeviceCommand {
  uint64_t offset, length;
  uint8_t seed;
  bool fua;
  bool owned;  // passes WriteFlags::keep (the device may keep the data, not copy it)
  explicit WriteCmd(const DeviceModel& m) {
    offset = GenOffset(m.bytes.size());
    length = GenLength(offset, m.bytes.size());
    seed = *rc::gen::arbitrary<uint8_t>();
    fua = *rc::gen::arbitrary<bool>();
    owned = *rc::gen::arbitrary<bool>();
  }
  std::vector<uint8_t> Data() const {
    std::vector<uint8_t> d(length);
    for (uint64_t i = 0; i < length; ++i) d[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    return d;
  }
  void apply(DeviceModel& m) const override {
    auto d = Data();
    if (length > 0) std::memcpy(m.bytes.data() + offset, d.data(), length);
  }
  void run(const DeviceModel&, DeviceUnderTest& s) const override {
    if (!owned) {
      auto d = Data();
      RC_ASSERT(s.run(s.device->Write(offset, d, {.fua = fua})).ok());
      return;
    }
    auto d = std::make_shared<const std::vector<uint8_t>>(Data());
    const std::shared_ptr<const void> keep = d;
    RC_ASSERT(s.run(s.device->Write(offset, *d, {.fua = fua, .keep = &keep})).ok());
    RC_ASSERT(*d == Data());  // a device that keeps the data never changes it
  }
  void show(std::ostream& os) const override {
    os << "Write(" << offset << ", " << length << ", seed=" << int(seed) << (fua ? ", FUA" : "")
       << (owned ? ", owned" : "") << ")";
  }
};

struct ZeroCmd : DeviceCommand {
  uint64_t offset, length;
  bool trim, no_hole;
  explicit ZeroCmd(const DeviceModel& m) {
    offset = GenOffset(m.bytes.size());
    length = GenLength(offset, m.bytes.size());
    trim = *rc::gen::arbitrary<bool>();
    no_hole = *rc::gen::arbitrary<bool>();
  }
  void apply(DeviceModel& m) const override {
    if (length > 0) std::memset(m.bytes.data() + offset, 0, length);
  }
  void run(const DeviceModel&, DeviceUnderTest& s) const override {
    Status st = trim ? s.run(s.device->Trim(offset, length, {}))
                     : s.run(s.device->WriteZeroes(offset, length, {.no_hole = no_hole}));
    RC_ASSERT(st.ok());
  }
  void show(std::ostream& os) const override {
    os << (trim ? "Trim(" : "WriteZeroes(") << offset << ", " << length
       << (no_hole && !trim ? ", NO_HOLE" : "") << ")";
  }
};

struct ReadCmd : DeviceCommand {
  uint64_t offset, length;
  explicit ReadCmd(const DeviceModel& m) {
    offset = GenOffset(m.bytes.size());
    length = GenLength(offset, m.bytes.size());
  }
  void run(const DeviceModel& m, DeviceUnderTest& s) const override {
    std::vector<uint8_t> out(length, 0xee);
    std::vector<device::ByteRange> zeroes;
    RC_ASSERT(s.run(s.device->Read(offset, out, &zeroes)).ok());
    RC_ASSERT(length == 0 || std::memcmp(out.data(), m.bytes.data() + offset, length) == 0);
    uint64_t last_end = 0;
    for (const auto& z : zeroes) {  // reported holes are ordered, in range and all zero
      RC_ASSERT(z.offset >= last_end);
      RC_ASSERT(z.offset + z.length <= length);
      for (uint64_t i = 0; i < z.length; ++i) RC_ASSERT(m.bytes[offset + z.offset + i] == 0);
      last_end = z.offset + z.length;
    }
  }
  void show(std::ostream& os) const override { os << "Read(" << offset << ", " << length << ")"; }
};

struct StatusCmd : DeviceCommand {
  uint64_t offset, length;
  uint32_t max_extents;
  explicit StatusCmd(const DeviceModel& m) {
    offset = *rc::gen::inRange<uint64_t>(0, m.bytes.size());
    length = *rc::gen::inRange<uint64_t>(1, m.bytes.size() - offset + 1);
    max_extents = *rc::gen::element<uint32_t>(1, 2, 1000);
  }
  void run(const DeviceModel& m, DeviceUnderTest& s) const override {
    auto r = s.run_status(s.device->BlockStatus(offset, length, max_extents));
    RC_ASSERT(r.ok());
    RC_ASSERT(!r->empty());
    RC_ASSERT(r->size() <= max_extents);
    uint64_t pos = offset;
    for (const auto& e : *r) {
      RC_ASSERT(e.length > 0);
      RC_ASSERT(pos + e.length <= offset + length);
      if (e.zero || e.hole) {  // claimed zero: the model must agree
        for (uint64_t i = 0; i < e.length; ++i) RC_ASSERT(m.bytes[pos + i] == 0);
      }
      pos += e.length;
    }
  }
  void show(std::ostream& os) const override {
    os << "BlockStatus(" << offset << ", " << length << ", max=" << max_extents << ")";
  }
};

struct FlushCmd : DeviceCommand {
  explicit FlushCmd(const DeviceModel&) {}
  void run(const DeviceModel&, DeviceUnderTest& s) const override {
    RC_ASSERT(s.run(s.device->Flush()).ok());
  }
  void show(std::ostream& os) const override { os << "Flush()"; }
};

struct CacheCmd : DeviceCommand {
  uint64_t offset, length;
  explicit CacheCmd(const DeviceModel& m) {
    offset = GenOffset(m.bytes.size());
    length = GenLength(offset, m.bytes.size());
  }
  void run(const DeviceModel&, DeviceUnderTest& s) const override {
    RC_ASSERT(s.run(s.device->Cache(offset, length)).ok());
  }
  void show(std::ostream& os) const override { os << "Cache(" << offset << ", " << length << ")"; }
};

// Runs one random command sequence against a fresh device of `size` bytes.
inline void RunBlockDeviceModel(uint64_t size, DeviceUnderTest sut) {
  DeviceModel model;
  model.bytes.assign(size, 0);
  rc::state::check(model, sut,
                   rc::state::gen::execOneOfWithArgs<WriteCmd, WriteCmd, ZeroCmd, ReadCmd,
                                                     ReadCmd, StatusCmd, FlushCmd, CacheCmd>());
}

// Runs tasks that never suspend (devices completing inline, like MemoryVolume).
inline DeviceUnderTest InlineDevice(std::shared_ptr<device::BlockDevice> device) {
  DeviceUnderTest s;
  s.device = std::move(device);
  s.run = [](Task<Status> t) {
    std::optional<Status> out;
    Start(std::move(t), [&](Status st) { out = std::move(st); });
    PORTAL_ASSERT(out.has_value(), "task suspended; use a simulated runner");
    return *out;
  };
  s.run_status = [](Task<Result<std::vector<device::StatusExtent>>> t) {
    std::optional<Result<std::vector<device::StatusExtent>>> out;
    Start(std::move(t), [&](Result<std::vector<device::StatusExtent>> r) { out = std::move(r); });
    PORTAL_ASSERT(out.has_value(), "task suspended; use a simulated runner");
    return std::move(*out);
  };
  return s;
}

}  // namespace portal::testing
