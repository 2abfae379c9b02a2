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
#include <cstdlib>
#include <cstring>

#include "core/errors.h"
#include "core/json.h"
#include "core/files.h"
#include "data/data.h"
#include "model/llmc_io.h"

namespace mc {

namespace {
constexpr char kMagic[8] = {'M', 'C', 'C', 'K', 'P', 'T', '0', '1'};
constexpr char kEndMagic[8] = {'M', 'C', 'C', 'K', 'E', 'N', 'D', '1'};
constexpr size_t kAlign = 64;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

}  // namespace

void save_checkpoint(const std::string& path, const nlohmann::json& meta_in,
                     const std::vector<CheckpointTensor>& tensors) {
  nlohmann::json meta = meta_in;
  meta["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) meta["tensors"].push_back({{"name", t.name}, {"dtype", "f32"}, {"numel", t.numel}});
  write_checkpoint_raw(path, json_text(meta), tensors);
}

void write_checkpoint_raw(const std::string& path, const std::string& js,
                          const std::vector<CheckpointTensor>& tensors) {
  const uint64_t jl = js.size();
  const std::string pad(align_up(16 + js.size()) - 16 - js.size(), '\0');
  std::vector<std::pair<const void*, size_t>> parts = {
      {kMagic, 8}, {&jl, 8}, {js.data(), js.size()}, {pad.data(), pad.size()}};
  for (const auto& t : tensors) parts.emplace_back(t.data, t.numel * sizeof(float));
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [p, n] : parts) crc = crc32_z(crc, static_cast<const Bytef*>(p), n);
  const uint32_t trailer[2] = {uint32_t(crc), 0};
  parts.push_back({trailer, 8});
  parts.push_back({kEndMagic, 8});
  write_file_atomic(path, parts);  // temp file, fsync, rename, directory fsync
}

namespace {
// Metadata larger than this is not a checkpoint's (ours are a few kilobytes).
constexpr uint64_t kMaxMetaBytes = uint64_t(16) << 20;

// A JSON value for a one-line message: its compact text, cut to 60 characters.
std::string brief(const nlohmann::json& j) {
  std::string s = json_text(j);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// The structure of an opened checkpoint: parsed metadata and the tensor table, with every size
// checked against the file size (overflow-free) before the caller allocates anything.
struct Header {
  nlohmann::json meta;
  std::vector<std::pair<std::string, size_t>> tensors;  // name, numel
  size_t data_offset = 0, file_bytes = 0;
};

Header read_header(const std::string& path, int fd, uLong* crc) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(path + ": cannot stat: " + std::strerror(errno));
  Header h;
  h.file_bytes = size_t(st.st_size);
  char head[16];
  if (h.file_bytes < 32 || pread_full(fd, head, 16, 0, path) != 16)
    throw UsageError(path + ": truncated checkpoint (no header)");
  if (std::memcmp(head, kMagic, 8) != 0) throw UsageError(path + ": not a minicolossus checkpoint (bad magic)");
  uint64_t jl = 0;
  std::memcpy(&jl, head + 8, 8);
  if (jl > h.file_bytes - 32) throw UsageError(path + ": truncated checkpoint (metadata cut off)");
  if (jl > kMaxMetaBytes)
    throw UsageError(path + strfmt(": corrupted checkpoint (metadata of %llu bytes)", (unsigned long long)jl));
  h.data_offset = align_up(16 + size_t(jl));
  if (h.data_offset + 16 > h.file_bytes) throw UsageError(path + ": truncated checkpoint (metadata cut off)");
  // The header, metadata and padding in one read.
  std::string pre(h.data_offset, '\0');
  if (pread_full(fd, pre.data(), pre.size(), 0, path) != pre.size())
    throw UsageError(path + ": truncated checkpoint (metadata cut off)");
  if (crc) *crc = crc32(*crc, reinterpret_cast<const Bytef*>(pre.data()), uInt(pre.size()));
  h.meta = nlohmann::json::parse(pre.begin() + 16, pre.begin() + 16 + std::ptrdiff_t(jl), nullptr, false);
  if (h.meta.is_discarded() || !h.meta.is_object())
    throw UsageError(path + ": corrupted checkpoint metadata (not a JSON object)");
  const auto it = h.meta.find("tensors");
  if (it == h.meta.end() || !it->is_array())
    throw UsageError(path + ": corrupted checkpoint metadata (no \"tensors\" array)");
  // Sizes: each tensor, and their sum, must fit in the bytes the file has (checked before adding, so
  // nothing overflows and a hostile numel cannot make the caller allocate beyond the file size).
  const size_t room = h.file_bytes - h.data_offset - 16;
  size_t data_bytes = 0;
  for (const auto& t : *it) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("numel") ||
        !t["numel"].is_number_unsigned())
      throw UsageError(path + ": corrupted checkpoint metadata (a tensor entry needs a string \"name\" and an "
                              "unsigned integer \"numel\")");
    if (t.contains("dtype") && t["dtype"] != "f32")
      throw UsageError(path + ": checkpoint tensor " + t["name"].get<std::string>() + " has dtype " +
                       brief(t["dtype"]) + " (only \"f32\" is supported)");
    const uint64_t numel = t["numel"].get<uint64_t>();
    if (numel > (room - data_bytes) / sizeof(float))
      throw UsageError(path + strfmt(": truncated checkpoint (tensor %s of %llu elements does not fit the file's %zu "
                                     "bytes)",
                                     t["name"].get<std::string>().c_str(), (unsigned long long)numel, h.file_bytes));
    data_bytes += size_t(numel) * sizeof(float);
    h.tensors.emplace_back(t["name"].get<std::string>(), size_t(numel));
  }
  if (data_bytes != room)
    throw UsageError(path + strfmt(": oversized checkpoint (expected %zu bytes, file has %zu)",
                                   h.data_offset + data_bytes + 16, h.file_bytes));
  return h;
}

// JSON member `key` of obj as an integer in [lo, hi]; UsageError naming the file and key otherwise.
int64_t meta_int(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw UsageError(where + ": checkpoint metadata has no \"" + key + "\"");
  if (!it->is_number_integer())
    throw UsageError(where + ": checkpoint metadata \"" + key + "\" is " + brief(*it) + ", not an integer");
  int64_t v;
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > uint64_t(INT64_MAX))
      throw UsageError(where + strfmt(": checkpoint metadata \"%s\" %llu is out of range [%lld, %lld]", key,
                                      (unsigned long long)u, (long long)lo, (long long)hi));
    v = int64_t(u);
  } else {
    v = it->get<int64_t>();
  }
  if (v < lo || v > hi)
    throw UsageError(where + strfmt(": checkpoint metadata \"%s\" %lld is out of range [%lld, %lld]", key,
                                    (long long)v, (long long)lo, (long long)hi));
  return v;
}

const std::string& meta_string(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw UsageError(where + ": checkpoint metadata has no \"" + key + "\"");
  if (!it->is_string())
    throw UsageError(where + ": checkpoint metadata \"" + key + "\" is " + brief(*it) + ", not a string");
  return it->get_ref<const std::string&>();
}

ModelConfig model_of(const nlohmann::json& meta, const std::string& where) {
  const auto it = meta.find("model");
  if (it == meta.end()) throw UsageError(where + ": checkpoint metadata has no \"model\"");
  if (!it->is_object()) throw UsageError(where + ": checkpoint metadata \"model\" is not an object");
  const nlohmann::json& m = *it;
  ModelConfig c;
  // Range checks proper are validate_model_config's; here only "fits an int".
  c.max_seq_len = int(meta_int(m, "max_seq_len", INT32_MIN, INT32_MAX, where + " (model)"));
  c.vocab_size = int(meta_int(m, "vocab_size", INT32_MIN, INT32_MAX, where + " (model)"));
  c.padded_vocab_size = int(meta_int(m, "padded_vocab_size", INT32_MIN, INT32_MAX, where + " (model)"));
  c.num_layers = int(meta_int(m, "num_layers", INT32_MIN, INT32_MAX, where + " (model)"));
  c.num_heads = int(meta_int(m, "num_heads", INT32_MIN, INT32_MAX, where + " (model)"));
  c.channels = int(meta_int(m, "channels", INT32_MIN, INT32_MAX, where + " (model)"));
  validate_model_config(c, where);
  return c;
}

// Note [Checkpoint metadata is input]
// The checksum proves the file is what some writer wrote, not that the writer was ours or sane: a
// hand-edited or crafted checkpoint with a valid checksum can say 0 heads (a division by zero), a
// vocabulary larger than the padded one (reads past the logits), a negative step. Every key any
// command reads is therefore checked here, once, for presence, type and range, so eval, sample,
// export and train --resume all read only metadata that passed.
void validate_meta(const Header& h, const std::string& path) {
  const nlohmann::json& meta = h.meta;
  const ModelConfig c = model_of(meta, path);  // validated there
  const size_t n = make_layout(c).total;
  meta_int(meta, "step", 0, int64_t(INT32_MAX) - 1, path);
  meta_int(meta, "loader_pos", 0, INT64_MAX, path);
  meta_int(meta, "adam_t", 0, int64_t(INT32_MAX) - 1, path);
  meta_int(meta, "seq", 1, c.max_seq_len, path);
  meta_int(meta, "global_batch", 1, int64_t(INT32_MAX), path);
  meta_int(meta, "world_size", 1, int64_t(INT32_MAX), path);
  const std::string& tok = meta_string(meta, "tokenizer", path);
  if (!valid_tokenizer_name(tok))
    throw UsageError(path + ": checkpoint metadata \"tokenizer\" " + brief(meta["tokenizer"]) +
                     " is not a tokenizer name");
  meta_string(meta, "data_dir", path);
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    const auto is = [&](const auto& p) { return p.first == name; };
    const auto t = std::find_if(h.tensors.begin(), h.tensors.end(), is);
    if (t == h.tensors.end()) throw UsageError(path + ": checkpoint has no tensor '" + name + "'");
    if (std::count_if(h.tensors.begin(), h.tensors.end(), is) != 1)
      throw UsageError(path + ": checkpoint has tensor '" + name + "' more than once");
    if (t->second != n)
      throw UsageError(path + strfmt(": checkpoint tensor %s has %zu elements but the model has %zu parameters", name,
                                     t->second, n));
  }
}

// The CRC-32 the 16-byte trailer at off stores (UsageError if it is missing or not a trailer).
uint32_t read_trailer(int fd, uint64_t off, const std::string& path) {
  unsigned char tail[16];
  if (pread_full(fd, tail, 16, off, path) != 16) throw UsageError(path + ": truncated checkpoint (no trailer)");
  if (std::memcmp(tail + 8, kEndMagic, 8) != 0) throw UsageError(path + ": corrupted checkpoint (bad trailer)");
  uint32_t stored = 0;
  std::memcpy(&stored, tail, 4);
  return stored;
}

LoadedCheckpoint load_file(const std::string& path, bool validate) {
  const int fd = open_input_file(path, "");
  FdCloser closer(fd);
  LoadedCheckpoint ck;
  ck.path = path;
  uLong crc = crc32(0L, Z_NULL, 0);
  Header h = read_header(path, fd, &crc);
  uint64_t off = h.data_offset;
  for (const auto& [name, n] : h.tensors) {
    ck.names.push_back(name);
    ck.tensors.emplace_back(n);
    char* p = reinterpret_cast<char*>(ck.tensors.back().data());
    const size_t bytes = n * sizeof(float);
    if (pread_full(fd, p, bytes, off, path) != bytes) throw UsageError(path + ": truncated checkpoint (tensor data)");
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(p), bytes);
    off += bytes;
  }
  const uint32_t stored = read_trailer(fd, off, path);
  if (stored != uint32_t(crc))
    throw UsageError(path + strfmt(": corrupted checkpoint (checksum %08x, expected %08x)", unsigned(crc), stored));
  if (validate) validate_meta(h, path);
  ck.meta = std::move(h.meta);
  return ck;
}
}  // namespace

nlohmann::json read_checkpoint_meta(const std::string& path) {
  const int fd = open_input_file(path, "");
  FdCloser closer(fd);
  return read_header(path, fd, nullptr).meta;
}

CheckpointChecksum checkpoint_checksum(const std::string& path) {
  const int fd = open_input_file(path, "");
  FdCloser closer(fd);
  uLong crc = crc32(0L, Z_NULL, 0);
  const Header h = read_header(path, fd, &crc);
  const uint64_t end = h.file_bytes - 16;  // read_header checked room for the trailer
  std::vector<unsigned char> buf(size_t(1) << 20);
  for (uint64_t off = h.data_offset; off < end;) {
    const size_t n = size_t(std::min<uint64_t>(buf.size(), end - off));
    if (pread_full(fd, buf.data(), n, off, path) != n) throw UsageError(path + ": truncated checkpoint (tensor data)");
    crc = crc32_z(crc, buf.data(), n);
    off += n;
  }
  return {read_trailer(fd, end, path), uint32_t(crc)};
}

LoadedCheckpoint load_checkpoint_file(const std::string& path) { return load_file(path, false); }

LoadedCheckpoint load_checkpoint(const std::string& path) { return load_file(path, true); }

ModelConfig checkpoint_model(const LoadedCheckpoint& ck) { return model_of(ck.meta, ck.path); }

nlohmann::json model_json(const ModelConfig& m) {
  return {{"max_seq_len", m.max_seq_len}, {"vocab_size", m.vocab_size}, {"padded_vocab_size", m.padded_vocab_size},
          {"num_layers", m.num_layers},   {"num_heads", m.num_heads},   {"channels", m.channels}};
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
    if (std::sscanf(e->d_name, "ckpt_%d.%7s", &step, tail) == 2 && std::string(tail) == "bin" && step >= 0 &&
        std::string(e->d_name) == strfmt("ckpt_%08d.bin", step)) {
      // Only regular files (stat, never open: a FIFO named like a checkpoint must not block us).
      struct stat st {};
      const std::string full = dir + "/" + e->d_name;
      if (::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) found.emplace_back(step, full);
    }
  }
  ::closedir(d);
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& p : found) out.push_back(p.second);
  return out;
}

// Note [Pruning]
// --ckpt-keep N keeps the newest N checkpoints *of this run's history*: those at or below the step just
// saved. A checkpoint of a higher step is there only because --resume skipped it (corrupt, truncated,
// another model) or an earlier run in this directory got further; ranking it among the newest would make
// --ckpt-keep 1 delete the checkpoint just written and keep the unusable one, so that the next --resume
// finds nothing to continue from. Such files are left alone: the run overwrites each when it reaches its
// step, and --resume skips them again (with a warning) until then.
void prune_checkpoints(const std::string& dir, int keep, int current) {
  if (keep <= 0) return;
  int kept = 0;
  for (const auto& path : list_checkpoints(dir)) {  // newest first
    const int step = std::atoi(path.c_str() + path.rfind("ckpt_") + 5);
    if (step > current) continue;
    if (step == current || kept < keep) {
      ++kept;
      continue;
    }
    ::unlink(path.c_str());
  }
}

}  // namespace mc
