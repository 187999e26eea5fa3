// Node records and attachment records: which nodes' daemons exist, and which node each
// volume is published to (docs/csi.md "How the controller reaches a volume's owner",
// docs/volumes.md "Node and attachment records").
//
//   <url>/nodes/<node>.json          written by a daemon with a TCP control listener at
//   {"node":"node-a","control":"10.0.0.5:7070","since":"2026-12-07T15:00:00.000000Z"}
//                                    start (overwritten at every start)
//   <url>/attachments/<volume>.json  written by the CSI controller's daemon at
//   {"volume":"db","node":"node-a","read_only":false,
//    "since":"2026-12-07T15:00:00.000000Z"}
//                                    ControllerPublishVolume (volume.publish), before the
//                                    node may open the volume; removed at
//                                    ControllerUnpublishVolume (volume.unpublish)
//
// An attachment record tells the controller that the volume belongs to that node even
// before the node's daemon has opened it and written its owner record: the controller then
// never opens the volume itself (which would fence the node). One record per volume (our
// access modes are single-node), created with a conditional write where the store has one.
// Node ids are checked (control::ValidateNodeId: up to 253 bytes, a Kubernetes node name)
// before they name an object.
//
// Thread-safe (no state beyond the store).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/protocol.h"
#include "env/task.h"
#include "objstore/object_store.h"
#include "util/status.h"

namespace portal::daemon {

std::string NodeKey(std::string_view node);          // "nodes/<node>.json"
std::string AttachmentKey(std::string_view volume);  // "attachments/<volume>.json"

std::string EncodeNodeRecord(const control::NodeEntry& n);
Result<control::NodeEntry> DecodeNodeRecord(std::string_view json);
std::string EncodeAttachmentRecord(const control::AttachmentEntry& a);
Result<control::AttachmentEntry> DecodeAttachmentRecord(std::string_view json);

// Writes this daemon's node record (InvalidArgument for a node id that breaks the rule).
Task<Status> RegisterNode(objstore::ObjectStore& root, control::NodeEntry node);
// The record of `node`; nullopt when it is not registered (or its id breaks the rule).
Task<Result<std::optional<control::NodeEntry>>> FindNode(objstore::ObjectStore& root,
                                                         std::string node);
// The attachment of `volume`; nullopt when it is published nowhere.
Task<Result<std::optional<control::AttachmentEntry>>> FindAttachment(objstore::ObjectStore& root,
                                                                     std::string volume);

// volume.publish: records `want` (volume, node, read_only, since) unless a record exists.
struct PublishOutcome {
  enum Kind {
    kPublished,  // written now, or the same record was there already (idempotent)
    kOtherNode,  // published to another node: `record` is that one
    kOtherMode,  // published to this node with another read_only: `record` is that one
  };
  Kind kind = kPublished;
  control::AttachmentEntry record;
};
Task<Result<PublishOutcome>> PublishVolume(objstore::ObjectStore& root,
                                           control::AttachmentEntry want);
// volume.unpublish: removes the record of `volume` if it names `node` ("" = any node).
// True when a record was removed; false when none was there or it names another node.
Task<Result<bool>> UnpublishVolume(objstore::ObjectStore& root, std::string volume,
                                   std::string node);

}  // namespace portal::daemon
