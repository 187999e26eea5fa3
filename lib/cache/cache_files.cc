// DirectoryFiles: the disk cache's files in a local directory. This file is the only
// place the disk cache's errno values become Status.
#include "cache/cache_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace portal::cache {
namespace {

constexpr std::string_view kTmpSuffix = ".tmp";
constexpr const char* kLockName = "LOCK";

Status FromErrno(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  if (err == ENOSPC || err == EDQUOT) return Status::NoSpace(msg);
  if (err == EROFS || err == EACCES || err == EPERM) return Status::PermissionDenied(msg);
  return Status::IOError(msg);
}

class DirectoryFilesImpl final : public CacheFiles {
 public:
  explicit DirectoryFilesImpl(std::string dir) : dir_(std::move(dir)) {}
  ~DirectoryFilesImpl() override {
    if (dir_fd_ >= 0) ::close(dir_fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  }

  Status Open() override {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) return Status::IOError("cannot create " + dir_ + ": " + ec.message());
    // Entries are opened, written, renamed and removed relative to this descriptor: a read
    // looks up one name, not every component of the directory's path again.
    dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd_ < 0) return FromErrno(errno, "cannot open " + dir_);
    const std::string lock = dir_ + "/" + kLockName;
    lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) return FromErrno(errno, "cannot open " + lock);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      if (err == EWOULDBLOCK) return Status::IOError(dir_ + " is in use by another portalbd");
      return FromErrno(err, "cannot lock " + lock);
    }
    // Half-written entries of a crash.
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return FromErrno(errno, "cannot list " + dir_);
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name.ends_with(kTmpSuffix)) (void)::unlink((dir_ + "/" + std::string(name)).c_str());
    }
    ::closedir(d);
    return Status::Ok();
  }

  Result<std::vector<FileInfo>> List() override {
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return FromErrno(errno, "cannot list " + dir_);
    std::vector<FileInfo> out;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == ".." || name == kLockName || name.ends_with(kTmpSuffix)) continue;
      struct stat st;
      if (::stat((dir_ + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      out.push_back(FileInfo{std::move(name), static_cast<uint64_t>(st.st_size),
                             int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec});
    }
    ::closedir(d);
    return out;
  }

  Result<std::string> Read(const std::string& name) override {
    std::string out;
    RETURN_IF_ERROR(ReadInto(name, &out));
    return out;
  }

  Status ReadInto(const std::string& name, std::string* out) override {
    int fd = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FromErrno(errno, "cannot open " + PathOf(name));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return FromErrno(err, "cannot stat " + PathOf(name));
    }
    // Grown only (zeroing the growth): a buffer reused for entries of one size is
    // neither zeroed nor faulted in again.
    const size_t size = static_cast<size_t>(st.st_size);
    if (out->size() < size) out->resize(size);
    size_t got = 0;
    while (got < size) {
      ssize_t n = ::pread(fd, out->data() + got, size - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return FromErrno(err, "cannot read " + PathOf(name));
      }
      if (n == 0) break;  // shrank meanwhile: the caller's checks see a short entry
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    out->resize(got);
    return Status::Ok();
  }

  Result<uint64_t> ReadSplit(const std::string& name, std::span<uint8_t> head,
                             std::span<uint8_t> body) override {
    return Split(name, head, body, 0);
  }

  // RWF_NOWAIT: EAGAIN rather than wait for the disk. The open itself finds the entry in
  // the dentry and inode caches when it was listed or read lately (a warm cache); an
  // entry it would have to look up on disk costs that lookup once.
  Result<uint64_t> ReadSplitCached(const std::string& name, std::span<uint8_t> head,
                                   std::span<uint8_t> body) override {
    return Split(name, head, body, RWF_NOWAIT);
  }

  Status Write(const std::string& name, std::string_view data) override {
    const std::string tmp_name = name + std::string(kTmpSuffix);
    int fd = ::openat(dir_fd_, tmp_name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return FromErrno(errno, "cannot create " + PathOf(tmp_name));
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : ENOSPC;
        ::close(fd);
        (void)::unlinkat(dir_fd_, tmp_name.c_str(), 0);
        return FromErrno(err, "cannot write " + PathOf(tmp_name));
      }
      done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) {
      int err = errno;
      (void)::unlinkat(dir_fd_, tmp_name.c_str(), 0);
      return FromErrno(err, "cannot write " + PathOf(tmp_name));
    }
    if (::renameat(dir_fd_, tmp_name.c_str(), dir_fd_, name.c_str()) != 0) {
      int err = errno;
      (void)::unlinkat(dir_fd_, tmp_name.c_str(), 0);
      return FromErrno(err, "cannot rename " + PathOf(tmp_name));
    }
    return Status::Ok();
  }

  Status Remove(const std::string& name) override {
    if (::unlinkat(dir_fd_, name.c_str(), 0) != 0 && errno != ENOENT)
      return FromErrno(errno, "cannot remove " + PathOf(name));
    return Status::Ok();
  }

  std::string Describe() const override { return dir_; }

 private:
  // For error messages only: entries are reached through dir_fd_, so a read or write
  // builds no path.
  std::string PathOf(const std::string& name) const { return dir_ + "/" + name; }

  Result<uint64_t> Split(const std::string& name, std::span<uint8_t> head, std::span<uint8_t> body,
                         int flags) {
    // O_NOATIME (where allowed: our own files): a read does not dirty the inode.
    int fd = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FromErrno(errno, "cannot open " + PathOf(name));
    // One spare byte past the two parts tells a longer file from an exact one without
    // an fstat.
    uint8_t spare = 0;
    iovec iov[3] = {{head.data(), head.size()}, {body.data(), body.size()}, {&spare, 1}};
    iovec* cur = iov;
    int left = 3;
    uint64_t got = 0;
    while (left > 0) {
      ssize_t n = ::preadv2(fd, cur, left, static_cast<off_t>(got), flags);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        if (err == EAGAIN && (flags & RWF_NOWAIT)) return Status::Busy("not in the page cache");
        return FromErrno(err, "cannot read " + PathOf(name));
      }
      if (n == 0) break;  // the end of the file
      size_t asked = 0;
      for (int k = 0; k < left; ++k) asked += cur[k].iov_len;
      got += static_cast<uint64_t>(n);
      if (static_cast<size_t>(n) < asked) {
        // Short: the end of the file (a regular file reads whole otherwise), so no second
        // call to find it. With RWF_NOWAIT it may instead be where the page cache ends:
        // short of the two parts, that goes to the blocking pool, never counts as torn.
        // (Past them only the spare byte is missing: taken for the end, which at worst
        // accepts a longer file whose entry verifies.)
        if ((flags & RWF_NOWAIT) && got < head.size() + body.size()) {
          ::close(fd);
          return Status::Busy("not wholly in the page cache");
        }
        break;
      }
      size_t k = static_cast<size_t>(n);  // past the parts read whole, into the next
      while (left > 0 && k >= cur->iov_len) {
        k -= cur->iov_len;
        ++cur;
        --left;
      }
      if (left > 0) {
        cur->iov_base = static_cast<uint8_t*>(cur->iov_base) + k;
        cur->iov_len -= k;
      }
    }
    ::close(fd);
    return got;
  }

  const std::string dir_;
  int dir_fd_ = -1;  // dir_, opened by Open()
  int lock_fd_ = -1;
};

}  // namespace

std::unique_ptr<CacheFiles> DirectoryFiles(std::string dir) {
  return std::make_unique<DirectoryFilesImpl>(std::move(dir));
}

}  // namespace portal::cache
