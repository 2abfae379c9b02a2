// Opening user-named files safely (see files.h).
#include "core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/errors.h"

namespace mc {

namespace {

std::string label(const std::string& path, const std::string& what) { return what.empty() ? path : what + " " + path; }

}  // namespace

std::string parent_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();  // "new/" is the directory new, in "."
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void ensure_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // open() returns the lowest free number, which is fd (the lower ones are open by now). Opened for the
    // other direction, so that the number is taken but using it still fails (EBADF) as on a closed one.
    const int got = ::open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
    if (got >= 0 && got != fd) {  // cannot happen unless /dev/null is odd; keep the number reserved anyway
      ::dup2(got, fd);
      ::close(got);
    }
  }
}

FdCloser::~FdCloser() {
  if (fd >= 0) ::close(fd);
}

std::string file_kind(unsigned mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

// Note [Opening without blocking]
// open(2) of a FIFO for reading blocks until a writer appears, and open of a FIFO for writing until
// a reader does: a user who passes one by mistake (or a hostile path) would hang the job before any
// check runs. O_NONBLOCK makes that open return at once (read side) or fail with ENXIO (write side);
// fstat on the descriptor then tells what was opened, race-free. For regular files O_NONBLOCK has no
// effect, but it is cleared anyway so later reads behave as ordinary blocking reads.
int open_input_file(const std::string& path, const std::string& what) {
  const std::string who = label(path, what);
  if (path.empty()) throw UsageError((what.empty() ? std::string("file") : what) + ": empty path");
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) throw UsageError(who + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw UsageError(who + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UsageError(who + ": not a regular file (" + file_kind(st.st_mode) + ")");
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    const int e = errno;
    ::close(fd);
    throw RuntimeError(who + ": fcntl failed: " + std::strerror(e));
  }
  return fd;
}

void check_output_path(const std::string& path, const std::string& what) {
  const std::string who = label(path, what);
  if (path.empty()) throw UsageError((what.empty() ? std::string("file") : what) + ": empty path");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) throw UsageError(who + ": not a regular file (" + file_kind(st.st_mode) + ")");
    return;
  }
  const std::string dir = parent_of(path);
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0) throw UsageError(who + ": directory " + dir + " does not exist");
  if (!S_ISDIR(dst.st_mode)) throw UsageError(who + ": " + dir + " is not a directory");
}

std::FILE* open_output_file(const std::string& path, const std::string& what, bool append) {
  check_output_path(path, what);
  const std::string who = label(path, what);
  // O_NONBLOCK: a FIFO that appeared after the check fails with ENXIO instead of blocking
  // (Note [Opening without blocking]).
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (append ? O_APPEND : O_TRUNC);
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) throw UsageError(who + ": cannot open for writing: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UsageError(who + ": not a regular file (" + file_kind(st.st_mode) + ")");
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  std::FILE* f = ::fdopen(fd, append ? "a" : "w");
  if (!f) {
    const int e = errno;
    ::close(fd);
    throw RuntimeError(who + ": fdopen failed: " + std::strerror(e));
  }
  return f;
}

size_t pread_full(int fd, void* buf, size_t n, uint64_t off, const std::string& path) {
  char* p = static_cast<char*>(buf);
  size_t got = 0;
  while (got < n) {
    const size_t want = std::min<size_t>(n - got, size_t(1) << 30);
    const ssize_t r = ::pread(fd, p + got, want, off_t(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw RuntimeError(path + ": read failed: " + std::strerror(errno));
    }
    if (r == 0) break;  // end of file
    got += size_t(r);
  }
  return got;
}

std::string read_input_file(const std::string& path, const std::string& what, size_t max_bytes) {
  const int fd = open_input_file(path, what);
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(label(path, what) + ": cannot stat: " + std::strerror(errno));
  if (uint64_t(st.st_size) > max_bytes)
    throw UsageError(label(path, what) +
                     strfmt(": too large (%llu bytes, at most %zu)", (unsigned long long)st.st_size, max_bytes));
  std::string s(size_t(st.st_size), '\0');
  const size_t got = pread_full(fd, s.data(), s.size(), 0, label(path, what));
  s.resize(got);  // a file that shrank meanwhile: what is there
  return s;
}

namespace {
void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(bytes, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw RuntimeError(strfmt("%s: write failed: %s", path.c_str(), std::strerror(errno)));
    }
    p += w;
    bytes -= size_t(w);
  }
}
}  // namespace

void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = strfmt("%s.tmp.%d.%u", path.c_str(), int(::getpid()), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw RuntimeError(strfmt("%s: cannot create: %s", tmp.c_str(), std::strerror(errno)));
  try {
    for (const auto& part : parts) write_all(fd, part.first, part.second, tmp);
    if (::fsync(fd) != 0) throw RuntimeError(strfmt("%s: fsync failed: %s", tmp.c_str(), std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw RuntimeError(strfmt("%s: close failed: %s", tmp.c_str(), std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw RuntimeError(strfmt("%s: cannot rename into place: %s", path.c_str(), std::strerror(e)));
  }
  // Make the rename itself durable; a failure here is not worth failing the write for.
  const int dfd = ::open(parent_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace mc
