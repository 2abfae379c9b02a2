// The checkpoint directory of a run, claimed at start: created (with parents), proven writable, locked
// against a second run, and cleaned of temporary files a killed run left behind.
#pragma once
#include <string>

namespace mc {

// Note [Checkpoint directory]
// A checkpoint directory that cannot be written must be found before training, not after it (a run of
// hours would otherwise end with nothing saved), so the run claims it at start: mkdir -p, then a probe
// file written, fsynced and removed. Two runs sharing a directory would prune each other's checkpoints
// and one's --resume would silently continue the other, so the claim also takes an exclusive flock() on
// <dir>/.minicolossus.lock and writes its holder (pid, host, start time, command) into it; a second run
// is refused with exit 2 naming the holder. The kernel drops a flock when its process dies, so a killed
// run never leaves a stale lock (the file stays; its content only names the last holder). Once the lock
// is held, ckpt_*.tmp.* files (checkpoints a killed writer did not finish) are removed: no live writer
// can own them. Only rank 0 writes checkpoints, so only rank 0 claims the directory.
class RunDirLock {
 public:
  RunDirLock() = default;
  // Claims dir as described above; UsageError naming --ckpt-dir when it cannot. Prints a line per removed
  // temporary file unless quiet.
  static RunDirLock claim(const std::string& dir, bool quiet);
  RunDirLock(RunDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RunDirLock& operator=(RunDirLock&& o) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  ~RunDirLock();
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace mc
