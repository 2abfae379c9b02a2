// Claiming the checkpoint directory (Note [Checkpoint directory] in run_dir.h).
#include "train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "core/errors.h"

namespace fs = std::filesystem;

namespace mc {
namespace {

std::string self_command() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : s)
    if (c == '\0') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s.size() > 300 ? s.substr(0, 300) + "..." : s;
}

std::string holder_line() {
  char host[256] = "?";
  ::gethostname(host, sizeof(host) - 1);
  char when[64] = "?";
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  if (::localtime_r(&t, &tm)) std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
  return strfmt("pid %d on %s since %s: %s", int(::getpid()), host, when, self_command().c_str());
}

// mkdir -p with a message naming --ckpt-dir and the component that failed.
void make_dirs(const std::string& dir) {
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec))
    throw UsageError(strfmt("--ckpt-dir %s: exists and is not a directory", dir.c_str()));
  fs::path cur;
  for (const auto& part : p) {
    cur /= part;
    if (cur.empty() || fs::is_directory(cur, ec)) continue;
    if (fs::exists(cur, ec))
      throw UsageError(strfmt("--ckpt-dir %s: %s is not a directory", dir.c_str(), cur.c_str()));
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      throw UsageError(strfmt("--ckpt-dir %s: cannot create %s: %s", dir.c_str(), cur.c_str(), std::strerror(errno)));
  }
}

void probe_writable(const std::string& dir) {
  const std::string probe = dir + "/.write-probe." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw UsageError(strfmt("--ckpt-dir %s: not writable: %s", dir.c_str(), std::strerror(errno)));
  const char byte = 'x';
  const bool ok = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) throw UsageError(strfmt("--ckpt-dir %s: cannot write a file: %s", dir.c_str(), std::strerror(err)));
}

}  // namespace

RunDirLock RunDirLock::claim(const std::string& dir, bool quiet) {
  make_dirs(dir);
  probe_writable(dir);
  const std::string lock_path = dir + "/.minicolossus.lock";
  // O_NONBLOCK: never block in open() should something other than a regular file sit at that name.
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0) throw UsageError(strfmt("--ckpt-dir %s: cannot open %s: %s", dir.c_str(), lock_path.c_str(), std::strerror(errno)));
  RunDirLock lock;
  lock.fd_ = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw UsageError(strfmt("--ckpt-dir %s: %s is not a regular file", dir.c_str(), lock_path.c_str()));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK)
      throw UsageError(strfmt("--ckpt-dir %s: cannot lock %s: %s", dir.c_str(), lock_path.c_str(), std::strerror(errno)));
    char buf[512] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, size_t(n)) : "another process";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    for (char& c : holder)
      if (c == '\n') c = ' ';
    throw UsageError(strfmt("--ckpt-dir %s: in use by another run (%s); give each run its own --ckpt-dir",
                            dir.c_str(), holder.c_str()));
  }
  const std::string me = holder_line() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != ssize_t(me.size()))
    throw UsageError(strfmt("--ckpt-dir %s: cannot write %s: %s", dir.c_str(), lock_path.c_str(), std::strerror(errno)));
  // Leftovers of killed writers: nobody else can be writing here now.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt_", 0) == 0 && name.find(".tmp.") != std::string::npos) {
      std::error_code rm;
      if (fs::remove(e.path(), rm) && !quiet)
        std::printf("removed %s (an unfinished checkpoint of a run that was killed)\n", e.path().c_str());
    }
  }
  return lock;
}

RunDirLock& RunDirLock::operator=(RunDirLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace mc
