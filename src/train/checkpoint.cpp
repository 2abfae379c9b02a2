// Checkpoint writing (atomic, checksummed) and verified reading. See checkpoint.h for the format.
#include "train/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/errors.h"

namespace mc {

namespace {
constexpr char kMagic[8] = {'M', 'C', 'C', 'K', 'P', 'T', '0', '1'};
constexpr char kEndMagic[8] = {'M', 'C', 'C', 'K', 'E', 'N', 'D', '1'};
constexpr size_t kAlign = 64;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Writes with a running CRC-32; throws RuntimeError naming the file on failure.
struct CrcWriter {
  int fd;
  std::string path;
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t written = 0;
  void write(const void* p, size_t n, bool checksum = true) {
    const char* c = static_cast<const char*>(p);
    if (checksum) {
      for (size_t off = 0; off < n;) {  // zlib takes uInt lengths
        const size_t k = std::min<size_t>(n - off, 1u << 30);
        crc = crc32(crc, reinterpret_cast<const Bytef*>(c + off), uInt(k));
        off += k;
      }
    }
    while (n > 0) {
      const ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw RuntimeError(path + ": write failed: " + std::strerror(errno));
      }
      c += w;
      n -= size_t(w);
      written += size_t(w);
    }
  }
};

std::string dirname_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}
}  // namespace

void save_checkpoint(const std::string& path, const nlohmann::json& meta_in,
                     const std::vector<CheckpointTensor>& tensors) {
  nlohmann::json meta = meta_in;
  meta["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) meta["tensors"].push_back({{"name", t.name}, {"dtype", "f32"}, {"numel", t.numel}});
  const std::string js = meta.dump();
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw RuntimeError(tmp + ": cannot create checkpoint: " + std::strerror(errno));
  try {
    CrcWriter w{fd, tmp};
    w.write(kMagic, 8);
    const uint64_t jl = js.size();
    w.write(&jl, 8);
    w.write(js.data(), js.size());
    const std::string pad(align_up(w.written) - w.written, '\0');
    w.write(pad.data(), pad.size());
    for (const auto& t : tensors) w.write(t.data, t.numel * sizeof(float));
    const uint32_t trailer[2] = {uint32_t(w.crc), 0};
    w.write(trailer, 8, false);
    w.write(kEndMagic, 8, false);
    if (::fsync(fd) != 0) throw RuntimeError(tmp + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw RuntimeError(path + ": rename failed: " + err);
  }
  const int dfd = ::open(dirname_of(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
}

namespace {
// Opens path, checks the structure, parses the JSON. On return the file is positioned at the data.
struct Header {
  nlohmann::json meta;
  size_t data_offset = 0, data_bytes = 0, file_bytes = 0;
};

Header read_header(const std::string& path, FILE* f, uLong* crc) {
  struct stat st;
  if (::fstat(fileno(f), &st) != 0) throw UsageError(path + ": cannot stat: " + std::strerror(errno));
  Header h;
  h.file_bytes = size_t(st.st_size);
  char magic[8];
  uint64_t jl = 0;
  if (h.file_bytes < 16 || std::fread(magic, 1, 8, f) != 8 || std::fread(&jl, 8, 1, f) != 1)
    throw UsageError(path + ": truncated checkpoint (no header)");
  if (std::memcmp(magic, kMagic, 8) != 0) throw UsageError(path + ": not a minicolossus checkpoint (bad magic)");
  if (jl > h.file_bytes - 16) throw UsageError(path + ": truncated checkpoint (metadata cut off)");
  std::string js(jl, '\0');
  if (std::fread(js.data(), 1, jl, f) != jl) throw UsageError(path + ": truncated checkpoint (metadata cut off)");
  if (crc) {
    *crc = crc32(*crc, reinterpret_cast<const Bytef*>(magic), 8);
    *crc = crc32(*crc, reinterpret_cast<const Bytef*>(&jl), 8);
    *crc = crc32(*crc, reinterpret_cast<const Bytef*>(js.data()), uInt(jl));
  }
  try {
    h.meta = nlohmann::json::parse(js);
    for (const auto& t : h.meta.at("tensors")) h.data_bytes += t.at("numel").get<size_t>() * sizeof(float);
  } catch (const std::exception& e) {
    throw UsageError(path + ": corrupted checkpoint metadata (" + e.what() + ")");
  }
  h.data_offset = align_up(16 + jl);
  const size_t expect = h.data_offset + h.data_bytes + 16;
  if (h.file_bytes != expect)
    throw UsageError(path + strfmt(": %s checkpoint (expected %zu bytes, file has %zu)",
                                   h.file_bytes < expect ? "truncated" : "oversized", expect, h.file_bytes));
  const size_t pad = h.data_offset - 16 - jl;
  std::string zeros(pad, '\0');
  if (std::fread(zeros.data(), 1, pad, f) != pad) throw UsageError(path + ": truncated checkpoint");
  if (crc) *crc = crc32(*crc, reinterpret_cast<const Bytef*>(zeros.data()), uInt(pad));
  return h;
}
}  // namespace

nlohmann::json read_checkpoint_meta(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw UsageError(path + ": cannot open checkpoint: " + std::strerror(errno));
  try {
    Header h = read_header(path, f, nullptr);
    std::fclose(f);
    return h.meta;
  } catch (...) {
    std::fclose(f);
    throw;
  }
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw UsageError(path + ": cannot open checkpoint: " + std::strerror(errno));
  LoadedCheckpoint ck;
  ck.path = path;
  try {
    uLong crc = crc32(0L, Z_NULL, 0);
    Header h = read_header(path, f, &crc);
    ck.meta = h.meta;
    for (const auto& t : h.meta.at("tensors")) {
      const size_t n = t.at("numel").get<size_t>();
      ck.names.push_back(t.at("name").get<std::string>());
      ck.tensors.emplace_back(n);
      char* p = reinterpret_cast<char*>(ck.tensors.back().data());
      size_t left = n * sizeof(float);
      while (left > 0) {
        const size_t k = std::min<size_t>(left, 1u << 30);
        if (std::fread(p, 1, k, f) != k) throw UsageError(path + ": truncated checkpoint (tensor data)");
        crc = crc32(crc, reinterpret_cast<const Bytef*>(p), uInt(k));
        p += k;
        left -= k;
      }
    }
    uint32_t trailer[2];
    char end[8];
    if (std::fread(trailer, 4, 2, f) != 2 || std::fread(end, 1, 8, f) != 8)
      throw UsageError(path + ": truncated checkpoint (no trailer)");
    if (std::memcmp(end, kEndMagic, 8) != 0) throw UsageError(path + ": corrupted checkpoint (bad trailer)");
    if (trailer[0] != uint32_t(crc))
      throw UsageError(path + strfmt(": corrupted checkpoint (checksum %08x, expected %08x)", unsigned(crc), trailer[0]));
  } catch (const nlohmann::json::exception& e) {
    std::fclose(f);
    throw UsageError(path + ": corrupted checkpoint metadata (" + e.what() + ")");
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  return ck;
}

const std::vector<float>& LoadedCheckpoint::get(const std::string& name) const {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return tensors[i];
  throw UsageError(path + ": checkpoint has no tensor '" + name + "'");
}

std::string checkpoint_path(const std::string& dir, int step) { return dir + strfmt("/ckpt_%08d.bin", step); }

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int, std::string>> found;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return {};
  while (dirent* e = ::readdir(d)) {
    int step = 0;
    char tail[8] = {0};
    // exactly ckpt_<digits>.bin (temporary files have a longer tail)
    if (std::sscanf(e->d_name, "ckpt_%d.%7s", &step, tail) == 2 && std::string(tail) == "bin" &&
        std::string(e->d_name) == strfmt("ckpt_%08d.bin", step))
      found.emplace_back(step, dir + "/" + e->d_name);
  }
  ::closedir(d);
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& p : found) out.push_back(p.second);
  return out;
}

void prune_checkpoints(const std::string& dir, int keep) {
  if (keep <= 0) return;
  const auto all = list_checkpoints(dir);
  for (size_t i = size_t(keep); i < all.size(); ++i) ::unlink(all[i].c_str());
}

}  // namespace mc
