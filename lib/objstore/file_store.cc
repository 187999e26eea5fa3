#include "objstore/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "env/async.h"
#include "objstore/file_key.h"
#include "objstore/semantics.h"
#include "util/buffer_pool.h"
#include "util/log.h"

namespace portal::objstore {
namespace {

// The one place where errno becomes a Status for the file store.
Status ErrnoStatus(int err, std::string_view what) {
  std::string m = fmt::format("{}: {}", what, std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Status::NotFound(std::move(m));
    case EEXIST:
      return Status::PreconditionFailed(std::move(m));
    case EACCES:
    case EPERM:
    case EROFS:
      return Status::PermissionDenied(std::move(m));
    case ENOSPC:
    case EDQUOT:
      return Status::NoSpace(std::move(m));
    case ENAMETOOLONG:
      return Status::InvalidArgument(std::move(m));
    case EAGAIN:
    case EBUSY:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return Status::Unavailable(std::move(m));
    default:
      return Status::IOError(std::move(m));
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  // close() reports deferred write errors on some file systems (NFS): check it.
  int Close() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

std::string Parent(const std::string& path) { return path.substr(0, path.rfind('/')); }

Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.ok()) return ErrnoStatus(errno, "open directory " + dir);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync directory " + dir);
  return Status::Ok();
}

// mkdir -p for the directories below `root`, fsyncing each new entry into its parent so
// that an object written below survives a crash.
Status MakeDirs(const std::string& root, const std::string& dir) {
  if (dir.size() <= root.size()) return Status::Ok();
  size_t pos = root.size();
  while (pos < dir.size()) {
    size_t next = dir.find('/', pos + 1);
    if (next == std::string::npos) next = dir.size();
    std::string part = dir.substr(0, next);
    if (::mkdir(part.c_str(), 0755) == 0) {
      RETURN_IF_ERROR(FsyncDir(Parent(part)));
    } else if (errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir " + part);
    }
    pos = next;
  }
  return Status::Ok();
}

Status WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

std::string Etag(const struct stat& st) {
  uint64_t mtime_ns = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1'000'000'000ULL +
                      static_cast<uint64_t>(st.st_mtim.tv_nsec);
  return fmt::format("{:x}-{:x}-{:x}", static_cast<uint64_t>(st.st_ino), mtime_ns,
                     static_cast<uint64_t>(st.st_size));
}

// Depth bound for List's walk: a key of kMaxKeyBytes has at most that many segments, plus
// continuation pieces. Anything deeper is not ours.
constexpr size_t kMaxDepth = kMaxKeyBytes + kMaxKeyBytes * 3 / filekey::kMaxPiece + 2;

struct Walker {
  const std::string& root;
  const std::string& prefix;
  const std::string& start_after;
  std::vector<ObjectInfo>* out;

  // Could a key that starts with `key_prefix` match `prefix`?
  bool MayMatch(const std::string& key_prefix) const {
    return key_prefix.starts_with(prefix) || prefix.starts_with(key_prefix);
  }

  Status Walk(const std::string& rel, const std::string& pending, const std::string& key_prefix,
              size_t depth) {
    if (depth > kMaxDepth) return Status::Corruption("directory tree too deep under " + root);
    std::string abs = rel.empty() ? root : root + "/" + rel;
    DIR* d = ::opendir(abs.c_str());
    if (d == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::Ok();  // nothing stored there
      return ErrnoStatus(errno, "opendir " + abs);
    }
    std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) return ErrnoStatus(errno, "readdir " + abs);
        return Status::Ok();
      }
      std::string_view name(e->d_name);
      if (name.empty() || name[0] == '.') continue;  // ".", "..", ".tmp-*", foreign
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // deleted while we looked
        return ErrnoStatus(errno, "stat " + abs + "/" + std::string(name));
      }
      bool is_dir = S_ISDIR(st.st_mode);
      if (!is_dir && !S_ISREG(st.st_mode)) continue;
      auto dn = filekey::DecodeName(pending, name, is_dir);
      std::string child = rel.empty() ? std::string(name) : rel + "/" + std::string(name);
      switch (dn.kind) {
        case filekey::NameKind::kForeign:
          log::Get("portalbd::objstore")->debug("file store: ignoring foreign entry path={}/{}",
                                                abs, name);
          break;
        case filekey::NameKind::kContinued:
          RETURN_IF_ERROR(Walk(child, pending + dn.text, key_prefix, depth + 1));
          break;
        case filekey::NameKind::kDir: {
          std::string next = key_prefix + dn.text + "/";
          if (MayMatch(next)) RETURN_IF_ERROR(Walk(child, "", next, depth + 1));
          break;
        }
        case filekey::NameKind::kFile: {
          std::string key = key_prefix + dn.text;
          if (!InListing(key, prefix, start_after) || key.size() > kMaxKeyBytes) break;
          if (filekey::EncodeKey(key) != child) break;  // a non-canonical (foreign) path
          out->push_back(ObjectInfo{std::move(key), static_cast<uint64_t>(st.st_size), Etag(st)});
          break;
        }
      }
    }
  }
};

}  // namespace

FileStore::FileStore(Env& env, std::string root, Options options)
    : env_(env), root_(std::move(root)), options_(std::move(options)) {}

bool FileStore::Crash(WriteStep step, const std::string& key) const {
  return options_.crash_hook && options_.crash_hook(step, key);
}

Result<std::string> FileStore::SyncGet(const std::string& key,
                                       const std::optional<GetRange>& range) {
  std::string path = root_ + "/" + filekey::EncodeKey(key);
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound(key);
    return ErrnoStatus(errno, "open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat " + path);
  ASSIGN_OR_RETURN(auto span, ResolveRange(static_cast<uint64_t>(st.st_size), range));
  std::string out(span.second - span.first, '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done,
                        static_cast<off_t>(span.first + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read " + path);
    }
    // Files are never modified in place (writes replace them), so a short file here means
    // something outside the store truncated it.
    if (n == 0) return Status::Corruption(path + " shrank while being read");
    done += static_cast<size_t>(n);
  }
  return out;
}

Result<ObjectInfo> FileStore::SyncHead(const std::string& key) {
  std::string path = root_ + "/" + filekey::EncodeKey(key);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound(key);
    return ErrnoStatus(errno, "stat " + path);
  }
  if (!S_ISREG(st.st_mode)) return Status::IOError(path + " is not a regular file");
  return ObjectInfo{key, static_cast<uint64_t>(st.st_size), Etag(st)};
}

Status FileStore::SyncWrite(const std::string& key, const std::string& data, bool if_absent) {
  std::string path = root_ + "/" + filekey::EncodeKey(key);
  std::string dir = Parent(path);
  RETURN_IF_ERROR(MakeDirs(root_, dir));

  std::string tmp;
  int raw_fd = -1;
  for (int attempt = 0; attempt < 8 && raw_fd < 0; ++attempt) {
    tmp = fmt::format("{}/.tmp-{:016x}", dir, env_.RandomU64());
    raw_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (raw_fd < 0 && errno != EEXIST) return ErrnoStatus(errno, "create " + tmp);
  }
  if (raw_fd < 0) return Status::IOError("no free temporary name in " + dir);
  Fd fd(raw_fd);

  bool abandoned = false;
  auto status = [&]() -> Status {
    size_t half = data.size() / 2;
    RETURN_IF_ERROR(WriteAll(fd.get(), data.data(), half, tmp));
    if (Crash(WriteStep::kTempPartial, key)) {
      abandoned = true;
      return Status::Ok();
    }
    RETURN_IF_ERROR(WriteAll(fd.get(), data.data() + half, data.size() - half, tmp));
    if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync " + tmp);
    if (fd.Close() != 0) return ErrnoStatus(errno, "close " + tmp);
    if (Crash(WriteStep::kTempSynced, key)) {
      abandoned = true;
      return Status::Ok();
    }
    if (if_absent) {
      if (::link(tmp.c_str(), path.c_str()) != 0) {
        if (errno == EEXIST) return Status::PreconditionFailed(key + " exists");
        return ErrnoStatus(errno, "link " + path);
      }
      ::unlink(tmp.c_str());
    } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoStatus(errno, "rename to " + path);
    }
    tmp.clear();  // published: nothing left to clean up
    if (Crash(WriteStep::kPublished, key)) {
      abandoned = true;
      return Status::Ok();
    }
    return FsyncDir(dir);
  }();
  if (abandoned) return Status::Shutdown("file store: write abandoned by crash_hook");
  if (!tmp.empty()) ::unlink(tmp.c_str());
  return status;
}

Status FileStore::SyncDelete(const std::string& key) {
  std::string path = root_ + "/" + filekey::EncodeKey(key);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::Ok();
    return ErrnoStatus(errno, "unlink " + path);
  }
  return FsyncDir(Parent(path));
}

Result<std::vector<ObjectInfo>> FileStore::SyncList(const std::string& prefix,
                                                    const std::string& start_after) {
  std::vector<ObjectInfo> out;
  auto start = filekey::EncodePrefixDir(prefix);
  Walker walker{root_, prefix, start_after, &out};
  RETURN_IF_ERROR(walker.Walk(start.dir, "", start.key_prefix, 0));
  std::sort(out.begin(), out.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Status FileStore::SyncCheckAccess() {
  struct stat st;
  if (::stat(root_.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound(url() + ": directory does not exist");
    return ErrnoStatus(errno, url());
  }
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(url() + ": not a directory");
  if (::access(root_.c_str(), R_OK | W_OK | X_OK) != 0) {
    return Status::PermissionDenied(url() + ": directory is not readable and writable");
  }
  return Status::Ok();
}

Task<Result<std::string>> FileStore::Get(std::string key, std::optional<GetRange> range) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  CO_RETURN_IF_ERROR(ValidateRange(range));
  co_return co_await RunBlocking(env_, [&] { return SyncGet(key, range); });
}

Task<Result<ObjectInfo>> FileStore::Head(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await RunBlocking(env_, [&] { return SyncHead(key); });
}

Task<Status> FileStore::Put(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  Status st = co_await RunBlocking(env_, [&] { return SyncWrite(key, data, false); });
  if (options_.buffer_pool) options_.buffer_pool->Give(std::move(data));
  co_return st;
}

Task<Status> FileStore::PutIfAbsent(std::string key, std::string data) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  Status st = co_await RunBlocking(env_, [&] { return SyncWrite(key, data, true); });
  if (options_.buffer_pool) options_.buffer_pool->Give(std::move(data));
  co_return st;
}

Task<Status> FileStore::PutIfAbsentRope(std::string key, Rope data) {
  // Joined into a pooled string (written as one file, given back after), unless the rope
  // is one string already.
  co_return co_await PutIfAbsent(std::move(key), std::move(data).Flatten(options_.buffer_pool));
}

Task<Status> FileStore::Delete(std::string key) {
  CO_RETURN_IF_ERROR(ValidateKey(key));
  co_return co_await RunBlocking(env_, [&] { return SyncDelete(key); });
}

Task<Result<std::vector<ObjectInfo>>> FileStore::List(std::string prefix, std::string start_after) {
  co_return co_await RunBlocking(env_, [&] { return SyncList(prefix, start_after); });
}

Task<Status> FileStore::CheckAccess() {
  co_return co_await RunBlocking(env_, [&] { return SyncCheckAccess(); });
}

}  // namespace portal::objstore
