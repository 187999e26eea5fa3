// FileStore (file:///abs/dir): every object is one regular file under the directory, at
// the path file_key.h derives from its key.
//
// Durability and atomicity of a write:
//   1. write the bytes to "<dir of the object>/.tmp-<random>" (O_EXCL), fsync it;
//   2. Put: rename() it over the object; PutIfAbsent: link() it to the object name, which
//      fails with EEXIST if the object exists (atomic in the kernel, so exactly one of any
//      number of racing threads or processes wins), then unlink the temp name;
//   3. fsync the directory.
// A process that dies at any point leaves either the old object or the new one visible,
// never a partial file; it may leave a ".tmp-*" file behind, which List never shows (no
// key encodes to a name starting with '.'). Directories created for new key prefixes are
// fsynced into their parents; they are never removed (Delete leaves them empty), so a
// Delete can never race a Put into a vanishing directory.
// Head's etag is "<inode>-<mtime ns>-<size>" in hex: a rewrite always creates a new file.
//
// All file system calls run on the Env's blocking pool (RunBlocking); errno is converted
// to Status in file_store.cc only. Under SimEnv, blocking work runs on the simulator's
// thread, so the store also works (slowly) in deterministic tests.
//
// Thread-safe; no in-process locks: concurrency control is the file system's, which is what
// makes it safe between processes too. `env` must outlive the store.
#pragma once

#include <functional>
#include <string>

#include "env/env.h"
#include "objstore/object_store.h"

namespace portal::objstore {

class FileStore final : public ObjectStore {
 public:
  // Points inside a write, for crash tests (file_store_test.cc).
  enum class WriteStep : uint8_t {
    kTempPartial,  // half of the bytes are in the temp file
    kTempSynced,   // the temp file is complete and fsynced
    kPublished,    // renamed/linked into place, directory not yet fsynced
  };
  struct Options {
    // Called at each WriteStep; returning true abandons the write right there, leaving
    // every file as a process killed at that point would (the call returns Shutdown).
    std::function<bool(WriteStep step, std::string_view key)> crash_hook;
    // Written-out buffers go back here; joined ropes come from here. Null: no pooling.
    // Must outlive the store.
    BufferPool* buffer_pool = nullptr;
  };

  // `root`: an absolute path; it must exist (CheckAccess says so clearly if not).
  FileStore(Env& env, std::string root, Options options);
  FileStore(Env& env, std::string root) : FileStore(env, std::move(root), Options{}) {}
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  Task<Result<std::string>> Get(std::string key, std::optional<GetRange> range = {}) override;
  Task<Result<ObjectInfo>> Head(std::string key) override;
  Task<Status> Put(std::string key, std::string data) override;
  Task<Status> PutIfAbsent(std::string key, std::string data) override;
  Task<Status> Delete(std::string key) override;
  Task<Result<std::vector<ObjectInfo>>> List(std::string prefix,
                                             std::string start_after = "") override;
  Task<Status> CheckAccess() override;
  Task<Status> PutIfAbsentRope(std::string key, Rope data) override;
  std::string url() const override { return "file://" + root_; }

  const std::string& root() const { return root_; }

 private:
  Result<std::string> SyncGet(const std::string& key, const std::optional<GetRange>& range);
  Result<ObjectInfo> SyncHead(const std::string& key);
  Status SyncWrite(const std::string& key, const std::string& data, bool if_absent);
  Status SyncDelete(const std::string& key);
  Result<std::vector<ObjectInfo>> SyncList(const std::string& prefix,
                                           const std::string& start_after);
  Status SyncCheckAccess();
  bool Crash(WriteStep step, const std::string& key) const;

  Env& env_;
  const std::string root_;
  const Options options_;
};

}  // namespace portal::objstore
