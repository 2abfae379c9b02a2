// Shared by the libFuzzer targets: the readers take paths, so each input is written to a file in a
// per-process scratch directory (tmpfs when there is one) and the public reader is called on it.
// Invariant: a reader may only fail by throwing mc::UsageError (bad input). Anything else that leaves
// it (another exception, a crash, a sanitizer report, an allocation past -malloc_limit_mb) is a finding;
// so is an input a reader ACCEPTS that breaks what its callers rely on (finding() aborts with why).
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/errors.h"

namespace fuzz {

// $MC_FUZZ_TMP (scripts/fuzz.sh makes one under /dev/shm), else /dev/shm, else /tmp; plus one
// directory per process, so targets run with -jobs/-fork never share a file.
inline const std::string& scratch_dir() {
  // Never destroyed, so the exit handler below can still read it.
  static const std::string* const dir = [] {
    const char* base = std::getenv("MC_FUZZ_TMP");
    std::string b = base && *base ? base : (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    auto* d = new std::string(b + "/mc-fuzz-" + std::to_string(::getpid()));
    ::mkdir(d->c_str(), 0700);
    std::atexit([] {  // a normal exit (replaying inputs) leaves nothing behind; a crash may
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Writes bytes to scratch_dir()/name (replacing it) and returns the path. Aborts if it cannot: a
// broken harness must not look like a clean run.
inline std::string write_input(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror(path.c_str());
    std::abort();
  }
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w <= 0) {
      std::perror(path.c_str());
      std::abort();
    }
    p += w;
    size -= size_t(w);
  }
  ::close(fd);
  return path;
}

// A reader accepted an input that its callers cannot use: report and abort, so libFuzzer saves it.
[[noreturn]] inline void finding(const std::string& why) {
  std::fprintf(stderr, "\n==FINDING== %s\n", why.c_str());
  std::fflush(stderr);
  std::abort();
}

// Runs f(); a UsageError is the expected refusal of bad input. Returns true if f() accepted the input.
template <class F>
bool accepts(F&& f) {
  try {
    f();
    return true;
  } catch (const mc::UsageError&) {
    return false;
  }
}

}  // namespace fuzz
