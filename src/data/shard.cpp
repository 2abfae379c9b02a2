// Token shards (llm.c format) and the data directory: mmap + validation on open, atomic writes.
// Invariant: a TokenShard that constructed successfully is fully valid (header, size, every token
// < vocab), so readers never re-check; files are only ever replaced by rename, never rewritten in place.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "data/data.h"

namespace mc {

namespace {

constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

int32_t read_le32(const unsigned char* p) {
  return int32_t(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
}

void put_le32(unsigned char* p, int32_t v) {
  const uint32_t u = uint32_t(v);
  for (int k = 0; k < 4; ++k) p[k] = (unsigned char)(u >> (8 * k));
}

// Largest token of a shard: a plain loop the compiler vectorises (uint16 max over 16/32 lanes).
uint16_t max_token(const uint16_t* t, size_t n) {
  uint16_t m = 0;
  for (size_t i = 0; i < n; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd, p, bytes);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw RuntimeError(strfmt("%s: write failed: %s", path.c_str(), std::strerror(errno)));
    }
    p += w;
    bytes -= size_t(w);
  }
}

std::string parent_dir(const std::string& path) {
  const std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

// Matches the shell glob *<word>*.bin on a file name.
bool glob_match(const std::string& name, const std::string& word) {
  const std::string ext = ".bin";
  if (name.size() < ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) return false;
  return name.substr(0, name.size() - ext.size()).find(word) != std::string::npos;
}

}  // namespace

namespace data_detail {
// Writes `parts` (concatenated) to `path` atomically: a unique temp file in the same directory,
// fsync, rename, then fsync of the directory. Shared with prepare.cpp.
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
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}
}  // namespace data_detail

// ---- TokenShard ------------------------------------------------------------------------------

TokenShard::TokenShard(const std::string& path, int vocab_size) : path_(path) {
  MC_CHECK(vocab_size > 0, "vocab_size %d", vocab_size);
  const char* p = path.c_str();
  const int fd = ::open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError(strfmt("%s: cannot open: %s", p, std::strerror(errno)));
  // The descriptor is closed on every path below; the mapping outlives it.
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(strfmt("%s: cannot stat: %s", p, std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw UsageError(strfmt("%s: not a regular file", p));
  const uint64_t file_bytes = uint64_t(st.st_size);
  if (file_bytes < kHeaderBytes)
    throw UsageError(strfmt("%s: truncated header: file has %llu bytes, a shard header is %zu", p,
                            (unsigned long long)file_bytes, kHeaderBytes));

  unsigned char header[kHeaderBytes];
  size_t got = 0;
  while (got < kHeaderBytes) {
    const ssize_t r = ::pread(fd, header + got, kHeaderBytes - got, off_t(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw UsageError(strfmt("%s: cannot read the header: %s", p, r < 0 ? std::strerror(errno) : "EOF"));
    got += size_t(r);
  }
  const int32_t magic = read_le32(header), version = read_le32(header + 4), count = read_le32(header + 8);
  if (magic != kShardMagic)
    throw UsageError(strfmt("%s: bad magic: expected %d, found %d (not an llm.c token shard)", p, kShardMagic, magic));
  if (version != kShardVersion)
    throw UsageError(strfmt("%s: unknown shard version %d (expected %d)", p, version, kShardVersion));
  if (count <= 0) throw UsageError(strfmt("%s: empty shard: header says %d tokens", p, count));
  const uint64_t want = kHeaderBytes + 2 * uint64_t(count);
  if (file_bytes != want) {
    const std::string why =
        file_bytes < want ? strfmt("truncated, %llu bytes missing", (unsigned long long)(want - file_bytes))
                          : strfmt("%llu trailing bytes", (unsigned long long)(file_bytes - want));
    throw UsageError(strfmt("%s: size mismatch: header says %d tokens (%llu bytes) but file has %llu bytes (%s)", p,
                            count, (unsigned long long)want, (unsigned long long)file_bytes, why.c_str()));
  }

  void* m = ::mmap(nullptr, size_t(file_bytes), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (m == MAP_FAILED) throw RuntimeError(strfmt("%s: mmap failed: %s", p, std::strerror(errno)));
  map_ = m;
  map_bytes_ = size_t(file_bytes);
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(m) + kHeaderBytes);
  count_ = size_t(count);

  // Fast path: one vectorised max over all tokens; locate the culprit only when it fails.
  if (vocab_size <= 65535 && max_token(tokens_, count_) >= vocab_size) {
    size_t i = 0;
    while (tokens_[i] < vocab_size) ++i;
    const std::string msg = strfmt("%s: token %u at position %zu is out of range for vocabulary %d", p,
                                   unsigned(tokens_[i]), i, vocab_size);
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw UsageError(msg);
  }
  ::madvise(m, size_t(file_bytes), MADV_RANDOM);  // the loader reads windows in shuffled order
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (tokens.empty()) throw RuntimeError(strfmt("%s: refusing to write an empty shard", path.c_str()));
  if (tokens.size() > size_t(INT32_MAX))
    throw RuntimeError(strfmt("%s: %zu tokens do not fit one shard (max %d)", path.c_str(), tokens.size(), INT32_MAX));
  unsigned char header[kHeaderBytes] = {};
  put_le32(header, kShardMagic);
  put_le32(header + 4, kShardVersion);
  put_le32(header + 8, int32_t(tokens.size()));
  // Tokens are written in host order; every supported host is little-endian like the format.
  static_assert(sizeof(uint16_t) == 2, "uint16_t");
  data_detail::write_file_atomic(path, {{header, kHeaderBytes}, {tokens.data(), tokens.size() * 2}});
}

// ---- the data directory ------------------------------------------------------------------------

DataDir open_data_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UsageError(strfmt("--data %s: no such directory", dir.c_str()));
  DataDir dd;
  dd.dir = dir;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_regular_file(ec2)) continue;  // follows symlinks, so linked shards count
    const std::string name = it->path().filename().string();
    const std::string full = (fs::path(dir) / name).string();
    if (glob_match(name, "train")) dd.train_files.push_back(full);
    if (glob_match(name, "val")) dd.val_files.push_back(full);
  }
  if (ec) throw UsageError(strfmt("--data %s: cannot list: %s", dir.c_str(), ec.message().c_str()));
  std::sort(dd.train_files.begin(), dd.train_files.end());
  std::sort(dd.val_files.begin(), dd.val_files.end());
  if (dd.train_files.empty()) throw UsageError(strfmt("--data %s: no *train*.bin shards", dir.c_str()));

  const std::string tj = (fs::path(dir) / "tokenizer.json").string();
  if (fs::exists(tj, ec)) {
    std::ifstream in(tj);
    if (!in) throw UsageError(strfmt("%s: cannot open", tj.c_str()));
    nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw UsageError(strfmt("%s: not valid JSON", tj.c_str()));
    if (!j.is_object() || !j.contains("tokenizer") || !j["tokenizer"].is_string() || !j.contains("vocab_size") ||
        !j["vocab_size"].is_number_integer())
      throw UsageError(strfmt("%s: expected {\"tokenizer\": <name>, \"vocab_size\": <integer>}", tj.c_str()));
    dd.tokenizer = j["tokenizer"].get<std::string>();
    const int64_t v = j["vocab_size"].get<int64_t>();
    if (v <= 0 || v > 65536)
      throw UsageError(strfmt("%s: vocab_size %lld must be in [1, 65536] (tokens are uint16)", tj.c_str(), (long long)v));
    dd.vocab_size = int(v);
    if (dd.tokenizer.empty()) throw UsageError(strfmt("%s: empty tokenizer name", tj.c_str()));
    if (dd.tokenizer == "byte" && dd.vocab_size != kByteVocab)
      throw UsageError(strfmt("%s: the byte tokenizer has vocab_size 256, not %d", tj.c_str(), dd.vocab_size));
  }
  return dd;
}

}  // namespace mc
