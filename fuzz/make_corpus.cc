// fuzz_make_corpus: writes the seed inputs of every fuzz target into fuzz/corpus/<target>/
// from the real encoders (segment and SST writers, manifest and snapshot encoders, the
// control codec, the NBD client handshake talking to the NBD server session), so the
// fuzzers start from valid objects and conversations and mutate from there.
//
//   cmake --build build --target fuzz_make_corpus && build/fuzz/fuzz_make_corpus fuzz/corpus
//
// Seeds are named seed-*; crash reproducers added by hand (crash-*) are left alone.
// Each target's input layout (a mode byte or two, then the bytes) is described at the
// top of its lib/<module>/*_fuzz.cc.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "control/protocol.h"
#include "lsm/sst_format.h"
#include "nbd/client_handshake.h"
#include "nbd/export.h"
#include "testing/memory_volume.h"
#include "testing/nbd_script.h"
#include "volume/manifest.h"
#include "volume/segment_format.h"
#include "volume/snapshot.h"

namespace fs = std::filesystem;
using namespace portal;

namespace {

fs::path out_root;
int written = 0;

void Seed(const std::string& target, const std::string& name, std::string_view prefix,
          std::string_view bytes) {
  const fs::path dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream f(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
  f << prefix << bytes;
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
  ++written;
}

std::string Bytes(uint64_t n, bool compressible) {
  std::string d(n, '\0');
  uint64_t x = 12345;
  for (size_t i = 0; i < d.size(); ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = compressible ? static_cast<char>('a' + (i / 512) % 7) : static_cast<char>(x >> 56);
  }
  return d;
}

// --- segments: small blocks so that seeds stay a few KiB --------------------------------
void Segments() {
  using namespace volume;
  auto make = [](uint64_t id, uint64_t blocks, bool compress, bool conditional) {
    SegmentFooter f;
    f.segment_id = id;
    f.epoch = 2;
    f.first_seq = 10;
    f.last_seq = 20;
    f.block_size = 512;
    f.blocks_per_chunk = 4;
    f.data_blocks = blocks;
    f.durable_through = id - 1;
    if (blocks > 0) {
      const uint64_t a = (blocks + 1) / 2;
      f.extents.push_back({{8, 8 + a, lsm::Loc::Data(id, 0)}, false, {}});
      f.extents.push_back({{8 + a, 100, lsm::Loc::Hole()}, false, {}});
      if (blocks > a) {
        f.extents.push_back({{300, 300 + blocks - a, lsm::Loc::Data(id, a)},
                             conditional,
                             conditional ? lsm::Loc::Data(3, 9) : lsm::Loc{}});
      }
      f.extents.push_back({{1000, 1004, lsm::Loc::Zero()},
                           conditional,
                           conditional ? lsm::Loc::Zero() : lsm::Loc{}});
    }
    auto e = EncodeSegment(&f, SegmentContents{objstore::Rope(Bytes(blocks * 512, compress)), {}},
                           EncodeOptions{compress, nullptr});
    return std::move(e.bytes).Flatten();
  };
  for (uint8_t mode : {0, 1}) {
    const std::string m(1, static_cast<char>(mode));
    const std::string sfx = mode ? "-fixsum" : "";
    Seed("volume_segment_format", "raw" + sfx, m, make(5, 6, false, false));
    Seed("volume_segment_format", "lz4" + sfx, m, make(6, 9, true, false));
    Seed("volume_segment_format", "conditional" + sfx, m, make(7, 3, false, true));
    Seed("volume_segment_format", "fence" + sfx, m, make(8, 0, false, false));
  }
  SegmentFooter fence;
  fence.segment_id = 9;
  fence.durable_through = 4;
  fence.resume = 30;
  auto e = volume::EncodeSegment(&fence, {}, {});
  Seed("volume_segment_format", "fence-resume", std::string(1, '\1'), std::move(e.bytes).Flatten());
}

// --- map SSTs ---------------------------------------------------------------------------
void Ssts() {
  auto make = [](size_t block_bytes, int n) {
    lsm::SstBuilder b(block_bytes);
    uint64_t at = 0;
    for (int i = 0; i < n; ++i) {
      const uint64_t len = 1 + (i * 7) % 13;
      lsm::Loc loc = i % 3 == 0   ? lsm::Loc::Data(10 + i / 4, i * 16)
                     : i % 3 == 1 ? lsm::Loc::Zero()
                                  : lsm::Loc::Hole();
      b.Add({at, at + len, loc});
      at += len + (i % 2) * 5;
    }
    lsm::SstIndex index;
    return b.Finish(&index);
  };
  for (uint8_t mode : {0, 1}) {
    const std::string m(1, static_cast<char>(mode));
    const std::string sfx = mode ? "-fixsum" : "";
    Seed("lsm_sst_format", "one-extent" + sfx, m, make(4096, 1));
    Seed("lsm_sst_format", "one-block" + sfx, m, make(4096, 20));
    Seed("lsm_sst_format", "blocks" + sfx, m, make(64, 40));
  }
}

// --- manifests and snapshot objects -----------------------------------------------------
std::vector<std::vector<lsm::SstRef>> Levels() {
  return {{{"map/1-2.sst", 0, 100, 700, 5, 40}},
          {{"map/1-1.sst", 50, 4000, 1200, 30, 800}, {"map/0-9.sst", 5000, 9000, 90, 2, 4}}};
}

void Manifests() {
  volume::Manifest m;
  m.volume_uuid = volume::MakeUuid(1, 2);
  m.size_bytes = 1 << 30;
  m.epoch = 3;
  m.epoch_manifest = 17;
  m.next_segment_id = 40;
  m.next_seq = 900;
  m.applied_segment = 38;
  m.applied_seq = 880;
  for (uint8_t mode : {0, 1}) {
    const std::string p(1, static_cast<char>(mode));
    const std::string sfx = mode ? "-reseal" : "";
    Seed("volume_manifest", "empty" + sfx, p, volume::EncodeManifest(m));
    volume::Manifest full = m;
    full.levels = Levels();
    full.upload_window = 8;
    full.snapshots.push_back({"before-upgrade", volume::MakeUuid(3, 4), 1765000000123456789,
                              volume::SnapshotKey(volume::MakeUuid(3, 4))});
    Seed("volume_manifest", "full" + sfx, p, volume::EncodeManifest(full));
  }
  // Version 1: no checksum, no upload_window.
  Seed("volume_manifest", "v1", std::string(1, '\0'),
       R"({"applied_segment":3,"applied_seq":9,"block_size":4096,"epoch":1,)"
       R"("epoch_manifest":1,"format_version":1,"levels":[[]],"next_segment_id":4,)"
       R"("next_seq":10,"segtab":"","size_bytes":1048576,"snapshots":[],)"
       R"("volume_uuid":"0f0e0d0c-0b0a-4908-8706-050403020100"})");

  volume::SnapshotObject s;
  s.volume_uuid = m.volume_uuid;
  s.name = "nightly";
  s.id = volume::MakeUuid(5, 6);
  s.created_ns = 1765000000000000000;
  s.size_bytes = 1 << 30;
  s.block_size = 4096;
  s.data_bytes = 844 * 4096;
  s.levels = Levels();
  s.segments = {10, 11, 12, 30};
  Seed("volume_snapshot", "object", std::string(1, '\0'), volume::EncodeSnapshotObject(s));
  Seed("volume_snapshot", "object-reseal", std::string(1, '\1'), volume::EncodeSnapshotObject(s));
  s.levels.clear();
  s.segments.clear();
  Seed("volume_snapshot", "empty-reseal", std::string(1, '\1'), volume::EncodeSnapshotObject(s));
}

// --- the control protocol: requests and replies as lines --------------------------------
void Control() {
  using namespace control;
  std::string requests;
  requests += EncodeRequest({Op::kSnapshotCreate, "snap1", "7"});
  requests += EncodeRequest({Op::kSnapshotList, "", "\"abc\""});
  requests += EncodeRequest({Op::kSnapshotGet, "snap1", ""});
  requests += EncodeRequest({Op::kSnapshotDelete, "old", "8"});
  requests += EncodeRequest({Op::kSnapshotRestore, "snap1", ""});
  requests += EncodeRequest({Op::kStatus, "", "9"});
  requests += "{\"op\":\"nope\"}\r\n\n";
  Seed("control_protocol", "requests", "\xff", requests);
  Seed("control_protocol", "requests-small-pieces", "\x02", requests);

  SnapshotEntry e{"snap1", volume::MakeUuid(1, 1), 1765000000000000000, 1 << 30, 12345, 1};
  DaemonStatus st;
  st.version = "0.1.0";
  st.size_bytes = 1 << 30;
  st.block_size = 4096;
  st.storage_url = "s3://bucket/vol";
  st.nbd_address = "127.0.0.1:10809";
  st.volume_uuid = volume::MakeUuid(2, 2);
  st.disk_cache_enabled = true;
  st.store_failing_since = "2026-12-07T12:00:00.000000Z";
  st.read_ahead_gets = 3;
  st.requests = {{"GET", 10, 1, 4096}, {"PUT_IF_ABSENT", 2, 0, 100}};
  std::string replies;
  replies += EncodeReply(OkReply{}, "7");
  replies += EncodeReply(SnapshotReply{e}, "\"x\"");
  replies += EncodeReply(SnapshotListReply{{e, e}});
  replies += EncodeReply(StatusReply{st});
  replies += EncodeReply(ErrorReply{"not_found", "no snapshot 'x'"}, "3");
  Seed("control_protocol", "replies", "\xff", replies);
}

// --- NBD: the client handshake talking to the server session ----------------------------
struct Conversation {
  std::string client;  // every byte the client sent
  std::string server;  // every byte the server sent
};

// Negotiates (ClientHandshake <-> nbd::Session), then sends `requests` and collects the
// replies.
Conversation Talk(bool structured, bool base_allocation, const std::string& requests) {
  auto device = std::make_shared<testing::MemoryVolume>(1 << 20, 512);
  nbd::SingleExportCatalog catalog(nbd::ExportInfo{"portalbd", "", 1 << 20, false}, device);
  testing::SessionDriver d(catalog);
  nbd::ClientHandshake hs({.export_name = "portalbd",
                           .structured_replies = structured,
                           .base_allocation = base_allocation});
  Conversation c;
  for (int i = 0; i < 20 && hs.state() == nbd::ClientHandshake::State::kNegotiating; ++i) {
    std::string from_server = d.TakeOutput();
    c.server += from_server;
    std::string to_server;
    hs.Consume({reinterpret_cast<const uint8_t*>(from_server.data()), from_server.size()},
               &to_server);
    c.client += to_server;
    d.Feed(to_server);
  }
  if (hs.state() != nbd::ClientHandshake::State::kDone) {
    std::fprintf(stderr, "handshake failed: %s\n", hs.error().ToString().c_str());
    std::exit(1);
  }
  c.server += d.TakeOutput();
  c.client += requests;
  d.Feed(requests);
  c.server += d.TakeOutput();
  return c;
}

void Nbd() {
  using namespace nbd;
  using testing::Request;
  // nbd_client: cookies 1..16 are in flight, a READ of cookie c is c * 100 bytes long.
  std::string reads = Request(NBD_CMD_READ, 1, 0, 100) + Request(NBD_CMD_READ, 2, 512, 200) +
                      Request(NBD_CMD_READ, 5, 4096, 500);
  std::string writes =
      Request(NBD_CMD_WRITE, 3, 0, 300, 0, Bytes(300, false)) + Request(NBD_CMD_READ, 4, 0, 400) +
      Request(NBD_CMD_WRITE_ZEROES, 6, 1024, 600) + Request(NBD_CMD_TRIM, 7, 4096, 700) +
      Request(NBD_CMD_BLOCK_STATUS, 8, 0, 8192) +
      Request(NBD_CMD_READ, 9, 1 << 21, 900) +  // past the end: an error
      Request(NBD_CMD_FLUSH, 10, 0, 0);
  auto simple = Talk(false, false, reads);
  auto structured = Talk(true, true, writes);
  auto no_meta = Talk(true, false, writes);
  Seed("nbd_client", "simple", std::string("\x00\x80", 2), simple.server);
  Seed("nbd_client", "structured", "\x03\x80", structured.server);
  Seed("nbd_client", "structured-small-pieces", "\x03\x01", structured.server);
  Seed("nbd_client", "structured-no-meta", "\x01\x80", no_meta.server);

  // nbd_session: mode 0 is the raw conversation, handshake included; modes with bit 0
  // negotiate first (testing/nbd_fuzz.h), so their bytes are requests only.
  Seed("nbd_session", "simple", std::string("\x00\x40", 2), simple.client);
  Seed("nbd_session", "structured", std::string("\x00\x40", 2), structured.client);
  Seed("nbd_session", "structured-small-pieces", std::string("\x00\x01", 2), structured.client);
  std::string options =
      testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) +
      testing::Option(NBD_OPT_LIST, "") +
      testing::Option(NBD_OPT_INFO, testing::InfoOrGoData("portalbd", {0, 1, 2, 3})) +
      testing::Option(NBD_OPT_LIST_META_CONTEXT, testing::MetaData("portalbd", {"base:"})) +
      testing::Option(NBD_OPT_STARTTLS, "") + testing::Option(NBD_OPT_EXTENDED_HEADERS, "") +
      testing::Option(NBD_OPT_EXPORT_NAME, "portalbd") + reads;
  Seed("nbd_session", "options", std::string("\x00\x40", 2), options);
  Seed("nbd_session", "abort", std::string("\x00\x40", 2),
       testing::ClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE) + testing::Option(NBD_OPT_ABORT, ""));
  Seed("nbd_session", "requests-structured", std::string("\x03\x40", 2),
       writes + Request(NBD_CMD_DISC, 11, 0, 0));
  Seed("nbd_session", "requests-simple-readonly", std::string("\x05\x40", 2),
       reads + Request(NBD_CMD_WRITE, 12, 0, 10, NBD_CMD_FLAG_FUA, "0123456789"));
  Seed("nbd_session", "requests-big-buffer", std::string("\x0b\x40", 2),
       Request(NBD_CMD_WRITE, 1, 0, 8192, 0, Bytes(8192, true)) + reads);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_corpus fuzz/corpus\n");
    return 2;
  }
  out_root = argv[1];
  Segments();
  Ssts();
  Manifests();
  Control();
  Nbd();
  std::printf("%d seeds written under %s\n", written, argv[1]);
  return 0;
}
