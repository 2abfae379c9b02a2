// Opening the files a user names, and writing files atomically. Every input and output file goes
// through here, so a FIFO, a directory or a device given where a file belongs is refused at once with
// one line naming the flag, instead of blocking forever in open() or failing oddly later.
// Invariant: a descriptor or FILE* returned here refers to a regular file (checked with fstat on the
// opened descriptor, so a file swapped in between a check and the open cannot slip through).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace mc {

// Opens path for reading: O_RDONLY | O_NONBLOCK | O_CLOEXEC (so a FIFO cannot block the open), then
// fstat; anything that is not a regular file is refused with
//   UsageError("<what> <path>: not a regular file (a FIFO|a directory|a device|a socket)").
// A missing or unreadable file is UsageError("<what> <path>: cannot open: <reason>"). O_NONBLOCK is
// cleared before returning. `what` is the flag or role for the message ("--init-from", "--ckpt");
// empty: the message starts with the path. The caller owns (closes) the descriptor.
int open_input_file(const std::string& path, const std::string& what);

// The checks open_output_file makes before writing, for writers that create a temporary file beside
// the target and rename it into place: the target, if it exists, must be a regular file, and its
// directory must exist. UsageError("<what> <path>: ...") otherwise.
void check_output_path(const std::string& path, const std::string& what);

// The directory that holds path: "." for a bare name, "/" at the root; trailing slashes are not a level
// ("new/" is the directory new, in ".", as mkdir("new/") has it).
std::string parent_of(std::string path);

// Opens path for writing (created 0644; truncated, or appended to with append = true) after
// check_output_path; an existing FIFO, directory or device (/dev/null and /dev/full included) is
// refused. Returns a FILE* the caller fcloses. UsageError naming `what` on any failure.
std::FILE* open_output_file(const std::string& path, const std::string& what, bool append);

// What kind of file st_mode is, for messages: "a FIFO", "a directory", "a device", "a socket".
std::string file_kind(unsigned mode);

// Reads up to n bytes at offset off with pread (retrying short reads and EINTR); returns the bytes
// read, which is less than n only at end of file. Throws RuntimeError naming path on an I/O error.
size_t pread_full(int fd, void* buf, size_t n, uint64_t off, const std::string& path);

// Reads a whole (regular) file opened with open_input_file; at most max_bytes (UsageError beyond).
std::string read_input_file(const std::string& path, const std::string& what, size_t max_bytes = size_t(1) << 32);

// Writes `parts` (concatenated) to `path` atomically: a unique temporary file beside it (O_EXCL, so
// nothing already there is opened), fsync, rename over path, fsync of the directory. A crash never
// leaves a partial file under `path`. Throws RuntimeError naming the file on I/O failure.
void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts);

// Note [Standard descriptors]
// A process started with stdin, stdout or stderr closed (`train >&-`, some daemons and schedulers) hands
// those numbers to the next files it opens: the checkpoint directory's lock, the metrics file, a
// temporary checkpoint, an MPI socket. Every printf would then write into that file (measured: the step
// lines ended up in <ckpt-dir>/.minicolossus.lock). Called first thing in main, this opens /dev/null on
// each of 0, 1, 2 that is closed, so no file we open later can take their place: read-only on 1 and 2,
// write-only on 0, so that writing to stdout or stderr (reading stdin) still fails with EBADF exactly as
// on the closed descriptor (commands whose output is their product report that; train just goes on).
void ensure_standard_fds();

// Closes a descriptor when it goes out of scope.
struct FdCloser {
  int fd = -1;
  explicit FdCloser(int f) : fd(f) {}
  ~FdCloser();
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
};

}  // namespace mc
