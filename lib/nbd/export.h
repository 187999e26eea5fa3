// Exports: what NBD clients can attach, and the catalog the handshake consults.
//
// The daemon's catalog serves the volume under its export name ("portalbd", also the
// default for the empty name) and, once snapshots exist, "portalbd@NAME" read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "device/block_device.h"
#include "nbd/request_observer.h"
#include "util/status.h"

namespace portal::nbd {

struct ExportInfo {
  std::string name;  // canonical name
  std::string description;
  uint64_t size_bytes = 0;
  bool read_only = false;
  uint32_t min_block_size = 1;
  uint32_t preferred_block_size = 4096;
  uint32_t max_payload = 32u << 20;
};

// An export opened by one connection for the transmission phase. Whatever `pin` holds
// (e.g. a snapshot reference) stays alive until the connection ends. `observer`, when
// set, sees every request of this connection (request_observer.h).
struct OpenExport {
  ExportInfo info;
  std::shared_ptr<device::BlockDevice> device;
  std::shared_ptr<void> pin;
  std::shared_ptr<RequestObserver> observer;
};

// Thread-safe; calls are quick (no I/O).
class ExportCatalog {
 public:
  virtual ~ExportCatalog() = default;
  // For NBD_OPT_LIST.
  virtual std::vector<ExportInfo> List() = 0;
  // For NBD_OPT_INFO and friends; "" names the default export. NotFound if unknown.
  virtual Result<ExportInfo> Lookup(std::string_view name) = 0;
  // For NBD_OPT_GO / NBD_OPT_EXPORT_NAME.
  virtual Result<std::shared_ptr<OpenExport>> Open(std::string_view name) = 0;
};

// A catalog with one export, served as `name` and as the default (empty) name.
class SingleExportCatalog final : public ExportCatalog {
 public:
  SingleExportCatalog(ExportInfo info, std::shared_ptr<device::BlockDevice> device)
      : info_(std::move(info)), device_(std::move(device)) {}
  std::vector<ExportInfo> List() override { return {info_}; }
  Result<ExportInfo> Lookup(std::string_view name) override {
    if (name.empty() || name == info_.name) return info_;
    return Status::NotFound("no export named '" + std::string(name) + "'");
  }
  Result<std::shared_ptr<OpenExport>> Open(std::string_view name) override {
    auto info = Lookup(name);
    if (!info.ok()) return info.status();
    return std::make_shared<OpenExport>(OpenExport{*info, device_, nullptr, nullptr});
  }

 private:
  ExportInfo info_;
  std::shared_ptr<device::BlockDevice> device_;
};

}  // namespace portal::nbd
