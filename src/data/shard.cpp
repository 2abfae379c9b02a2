// Token shards (llm.c format) and the data directory: validation on open, pread per sequence
// (Note [Shards are read, not mapped] in data.h), content fingerprints, atomic writes.
// Invariant: a TokenShard that constructed successfully is fully valid (header, size, every token
// < vocab); a later read that finds the file changed throws DataChanged. We only ever replace files by
// rename, never rewrite them in place.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/files.h"
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

// Note [Shard fingerprint]
// The fingerprint lets ranks check they read the same bytes, not just files of the same names and
// sizes; it is computed during the validation pass that reads every byte anyway, so it must cost little
// next to that read. zlib's CRC-32 and Adler-32 together ran at ~1.5 GB/s here (120 ms per 100 MB
// shard), so this is a 4-lane multiply-xor hash over 8-byte words (~8 GB/s, scalar): each lane is
// h = (h ^ m(w)) * K, a bijection of h for every word, so any single changed word changes the lane; the
// lanes, the byte count and a zero-padded tail are folded through the splitmix64 finaliser. It guards
// against accidents (a different file, a stale copy), not against an adversary.
class ContentHash {
 public:
  void update(const void* data, size_t n) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    total_ += n;
    if (tail_n_ > 0) {
      const size_t k = std::min(n, sizeof tail_ - tail_n_);
      std::memcpy(tail_ + tail_n_, p, k);
      tail_n_ += k, p += k, n -= k;
      if (tail_n_ < sizeof tail_) return;
      blocks(tail_, 1);
      tail_n_ = 0;
    }
    const size_t nb = n / 32;
    blocks(p, nb);
    p += nb * 32, n -= nb * 32;
    std::memcpy(tail_, p, n);
    tail_n_ = n;
  }
  uint64_t digest() const {
    uint64_t h[4] = {h_[0], h_[1], h_[2], h_[3]};
    if (tail_n_ > 0) {
      unsigned char last[32] = {};
      std::memcpy(last, tail_, tail_n_);
      block(h, last);
    }
    uint64_t r = fmix(total_ ^ 0x243f6a8885a308d3ull);
    for (uint64_t x : h) r = fmix(r ^ x);
    return r;
  }

 private:
  static uint64_t fmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static void block(uint64_t* h, const unsigned char* p) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + 8 * k, 8);
      w *= 0x9e3779b97f4a7c15ull;
      h[k] = (h[k] ^ (w ^ (w >> 29))) * 0xbf58476d1ce4e5b9ull;
    }
  }
  void blocks(const unsigned char* p, size_t nb) {
    for (size_t b = 0; b < nb; ++b) block(h_, p + 32 * b);
  }
  uint64_t h_[4] = {0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull};
  unsigned char tail_[32] = {};
  size_t tail_n_ = 0;
  uint64_t total_ = 0;
};

// Largest token of a shard: a plain loop the compiler vectorises (uint16 max over 16/32 lanes).
uint16_t max_token(const uint16_t* t, size_t n) {
  uint16_t m = 0;
  for (size_t i = 0; i < n; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

// Matches the shell glob *<word>*.bin on a file name.
bool glob_match(const std::string& name, const std::string& word) {
  const std::string ext = ".bin";
  if (name.size() < ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) return false;
  return name.substr(0, name.size() - ext.size()).find(word) != std::string::npos;
}

}  // namespace


// ---- TokenShard ------------------------------------------------------------------------------

namespace {

// Fingerprints of the shards validated by this process, so data_fingerprint() need not read a shard
// twice. Keyed by path; an entry counts only while the file's identity (device, inode, size, mtime)
// is unchanged.
struct FingerprintEntry {
  uint64_t dev, ino, size;
  int64_t mtime_ns;
  uint64_t fingerprint;
};
std::mutex& fp_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, FingerprintEntry>& fp_cache() {
  static std::map<std::string, FingerprintEntry> cache;
  return cache;
}
FingerprintEntry identity(const struct stat& st) {
  return {uint64_t(st.st_dev), uint64_t(st.st_ino), uint64_t(st.st_size),
          int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, 0};
}
bool same_file(const FingerprintEntry& a, const FingerprintEntry& b) {
  return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_ns == b.mtime_ns;
}

}  // namespace

// Each open shard holds a descriptor (Note [Shards are read, not mapped]); a data set of a thousand
// shards (FineWeb-100B) would pass the usual soft limit of 1024 descriptors, so the first shard raises
// the soft limit to the hard one, as many servers do. Where that is still too few, open fails with
// "Too many open files" naming the shard.
static void raise_fd_limit_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct rlimit r {};
    if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
      r.rlim_cur = r.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &r);
    }
  });
}

TokenShard::TokenShard(const std::string& path, int vocab_size) : path_(path), vocab_(vocab_size) {
  MC_CHECK(vocab_size > 0, "vocab_size %d", vocab_size);
  const char* p = path.c_str();
  raise_fd_limit_once();
  fd_ = open_input_file(path, "");
  // On any error below the descriptor is closed (the destructor does not run for a throwing ctor).
  struct Guard {
    int& fd;
    bool armed = true;
    ~Guard() {
      if (armed && fd >= 0) ::close(fd), fd = -1;
    }
  } guard{fd_};

  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw UsageError(strfmt("%s: cannot stat: %s", p, std::strerror(errno)));
  const uint64_t file_bytes = uint64_t(st.st_size);
  if (file_bytes < kHeaderBytes)
    throw UsageError(strfmt("%s: truncated header: file has %llu bytes, a shard header is %zu", p,
                            (unsigned long long)file_bytes, kHeaderBytes));

  unsigned char header[kHeaderBytes];
  if (pread_full(fd_, header, kHeaderBytes, 0, path) != kHeaderBytes)
    throw UsageError(strfmt("%s: cannot read the header: file shrank while opening", p));
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
  count_ = size_t(count);

  // One pass over the file: range check (a plain max loop the compiler vectorises; the culprit is
  // located only when it fails) and the fingerprint (Note [Shard fingerprint]).
  ContentHash hash;
  hash.update(header, kHeaderBytes);
  constexpr size_t kChunk = size_t(1) << 19;  // tokens per read (1 MiB)
  std::vector<uint16_t> buf(std::min(kChunk, count_));
  for (size_t first = 0; first < count_; first += buf.size()) {
    const size_t n = std::min(buf.size(), count_ - first);
    if (pread_full(fd_, buf.data(), n * 2, kHeaderBytes + 2 * uint64_t(first), path) != n * 2)
      throw UsageError(strfmt("%s: file shrank while it was being validated", p));
    hash.update(buf.data(), n * 2);
    if (vocab_size <= 65535 && max_token(buf.data(), n) >= vocab_size) {
      size_t i = 0;
      while (buf[i] < vocab_size) ++i;
      throw UsageError(strfmt("%s: token %u at position %zu is out of range for vocabulary %d", p, unsigned(buf[i]),
                              first + i, vocab_size));
    }
  }
  fingerprint_ = hash.digest();
  FingerprintEntry e = identity(st);
  e.fingerprint = fingerprint_;
  {
    std::lock_guard<std::mutex> lock(fp_mutex());
    fp_cache()[path] = e;
  }
  guard.armed = false;
}

TokenShard::~TokenShard() {
  if (fd_ >= 0) ::close(fd_);
}

void TokenShard::read(size_t first, size_t n, uint16_t* out) const {
  MC_CHECK(first <= count_ && n <= count_ - first, "tokens [%zu, %zu) of %zu", first, first + n, count_);
  const uint64_t off = kHeaderBytes + 2 * uint64_t(first);
  const size_t got = pread_full(fd_, out, n * 2, off, path_);
  if (got != n * 2) {
    struct stat st {};
    const long long now = ::fstat(fd_, &st) == 0 ? (long long)st.st_size : -1;
    throw DataChanged(strfmt("%s: shard changed while training (truncated to %lld bytes?): tokens [%zu, %zu) are "
                             "no longer there; it was validated with %zu tokens (%llu bytes)",
                             path_.c_str(), now, first, first + n, count_,
                             (unsigned long long)(kHeaderBytes + 2 * uint64_t(count_))));
  }
  if (vocab_ <= 65535 && n > 0 && max_token(out, n) >= vocab_) {
    size_t i = 0;
    while (out[i] < vocab_) ++i;
    throw DataChanged(strfmt("%s: shard changed while training: token %u at position %zu is now out of range for "
                             "vocabulary %d",
                             path_.c_str(), unsigned(out[i]), first + i, vocab_));
  }
}

std::vector<uint16_t> TokenShard::read_all() const {
  std::vector<uint16_t> t(count_);
  read(0, count_, t.data());
  return t;
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
  write_file_atomic(path, {{header, kHeaderBytes}, {tokens.data(), tokens.size() * 2}});
}

// ---- the data directory ------------------------------------------------------------------------

bool valid_tokenizer_name(const std::string& name) {
  const auto ok = [](char ch) { return std::isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.'; };
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), ok);
}

DataDir open_data_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UsageError(strfmt("--data %s: no such directory", dir.c_str()));
  DataDir dd;
  dd.dir = dir;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool train = glob_match(name, "train"), val = glob_match(name, "val");
    if (!train && !val) continue;
    // A name that says shard must be a (link to a) regular file: a FIFO would block the reader, and
    // skipping it silently would train on less data than the directory shows.
    const std::string full = (fs::path(dir) / name).string();
    struct stat st {};
    if (::stat(full.c_str(), &st) != 0)
      throw UsageError(strfmt("--data %s: cannot stat %s: %s", dir.c_str(), name.c_str(), std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
      throw UsageError(strfmt("--data %s: %s is not a regular file (%s)", dir.c_str(), full.c_str(),
                              file_kind(st.st_mode).c_str()));
    if (train) dd.train_files.push_back(full);
    if (val) dd.val_files.push_back(full);
  }
  if (ec) throw UsageError(strfmt("--data %s: cannot list: %s", dir.c_str(), ec.message().c_str()));
  std::sort(dd.train_files.begin(), dd.train_files.end());
  std::sort(dd.val_files.begin(), dd.val_files.end());
  if (dd.train_files.empty()) throw UsageError(strfmt("--data %s: no *train*.bin shards", dir.c_str()));

  const std::string tj = (fs::path(dir) / "tokenizer.json").string();
  struct stat tst {};
  // Present (even as a dangling link or a FIFO): must be a valid file.
  if (::lstat(tj.c_str(), &tst) == 0) read_tokenizer_json(tj, "--data", &dd.tokenizer, &dd.vocab_size);
  return dd;
}

}  // namespace mc

namespace mc {

uint64_t data_fingerprint(const DataDir& dd) {
  // FNV-1a-style fold of (fingerprint, position) pairs through a 64-bit mixer: order matters.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0x100000001b3ull;
  };
  for (const auto* files : {&dd.train_files, &dd.val_files}) {
    mix(files->size());
    for (const std::string& f : *files) {
      uint64_t fp = 0;
      bool have = false;
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0) {
        std::lock_guard<std::mutex> lock(fp_mutex());
        auto it = fp_cache().find(f);
        if (it != fp_cache().end() && same_file(it->second, identity(st))) fp = it->second.fingerprint, have = true;
      }
      if (!have) fp = TokenShard(f, dd.vocab_size).fingerprint();
      mix(fp);
    }
  }
  return h;
}

}  // namespace mc
