// `minicolossus info FILE`: what a file we read or write holds, detected by its content (magic numbers),
// never by its name. Text output (key: value lines) or one JSON object with --json.
// Note [info exit codes]
// 0: the file is of a known kind and every check passed (sizes against the header, checksums,
// metadata). 2: anything else, as for every bad input: an unknown kind, a FIFO or device, a missing
// file, or a damaged file of a known kind. For a damaged file, what could be read is still printed
// on stdout (with "ok": false and the "defect" in --json), and the defect is the one line on stderr.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <memory>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/json.h"
#include "core/files.h"
#include "data/bpe.h"
#include "data/data.h"
#include "model/gpt2.h"
#include "model/llmc_io.h"
#include "model/safetensors.h"
#include "train/checkpoint.h"
#include "train/commands.h"

namespace mc {

namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

// A defect found after part of the report was filled: the report is printed, then this is raised.
struct Defect {
  std::string message;
};

std::string hex64(uint64_t v) { return strfmt("%016llx", (unsigned long long)v); }

uint64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(path + ": cannot stat: " + std::strerror(errno));
  return uint64_t(st.st_size);
}

int32_t le32(const unsigned char* p) {
  return int32_t(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
}

// ---- token shards -----------------------------------------------------------------------------

// The tokenizer a data directory records (tokenizer.json), as open_data_dir reads it; absent: llm.c's
// GPT-2 default. A malformed tokenizer.json is reported, not fatal (the shard itself may be fine).
void neighbour_tokenizer(const std::string& dir, ojson& r) {
  const std::string tj = (fs::path(dir) / "tokenizer.json").string();
  struct stat st {};
  if (::lstat(tj.c_str(), &st) != 0) {
    r["tokenizer"] = "gpt2";
    r["vocab_size"] = kGpt2Vocab;
    r["tokenizer_source"] = "default (no tokenizer.json beside the shard: llm.c's GPT-2 data)";
    return;
  }
  try {
    std::string name;
    int vocab = 0;
    read_tokenizer_json(tj, "", &name, &vocab);
    r["tokenizer"] = name;
    r["vocab_size"] = vocab;
    r["tokenizer_source"] = tj;
  } catch (const UsageError& e) {
    r["tokenizer_source"] = std::string("unreadable: ") + e.what();
  }
}

// head: the file's first 16 bytes (magic, version, token count).
void info_shard(const std::string& path, const unsigned char* head, uint64_t bytes, ojson& r) {
  r["format"] = "token shard (llm.c)";
  r["version"] = le32(head + 4);
  r["tokens"] = le32(head + 8);
  r["bytes"] = bytes;
  neighbour_tokenizer(fs::path(path).parent_path().string(), r);
  // Validation and fingerprint as training computes them; the vocabulary is checked below, so that
  // the largest id can be reported.
  std::unique_ptr<TokenShard> opened;
  try {
    opened = std::make_unique<TokenShard>(path, 65536);
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  const TokenShard& shard = *opened;
  uint16_t max_id = 0;
  std::vector<uint16_t> buf(std::min<size_t>(size_t(1) << 20, shard.size()));
  for (size_t first = 0; first < shard.size(); first += buf.size()) {
    const size_t n = std::min(buf.size(), shard.size() - first);
    shard.read(first, n, buf.data());
    for (size_t i = 0; i < n; ++i) max_id = std::max(max_id, buf[i]);
  }
  r["max_token_id"] = max_id;
  r["fingerprint"] = hex64(shard.fingerprint());
  if (r.contains("vocab_size") && int(max_id) >= r["vocab_size"].get<int>())
    throw Defect{path + strfmt(": token id %u is out of range for the vocabulary %d", unsigned(max_id),
                               r["vocab_size"].get<int>())};
}

// ---- llm.c model files ------------------------------------------------------------------------

void info_llmc_model(const std::string& path, int fd, uint64_t bytes, ojson& r) {
  r["format"] = "llm.c model";
  int32_t h[256];
  if (bytes < sizeof h || pread_full(fd, h, sizeof h, 0, path) != sizeof h)
    throw Defect{path + strfmt(": truncated llm.c model header (%llu bytes, the header is 1024)",
                               (unsigned long long)bytes)};
  r["version"] = h[1];
  r["dtype"] = h[1] == kLlmcFp32 ? "fp32" : h[1] == kLlmcBf16 ? "bf16" : "unknown";
  r["max_seq_len"] = h[2];
  r["vocab_size"] = h[3];
  r["num_layers"] = h[4];
  r["num_heads"] = h[5];
  r["channels"] = h[6];
  r["padded_vocab_size"] = h[7];
  r["bytes"] = bytes;
  if (h[1] != kLlmcFp32 && h[1] != kLlmcBf16)
    throw Defect{path + strfmt(": llm.c model version %d is not supported (3 = fp32 and 5 = bf16 are)", h[1])};
  const ModelConfig c = llmc_header_model(h);
  try {
    r["parameters"] = validate_model_config(c, path);
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  const uint64_t want = llmc_model_bytes(c, h[1]);
  r["expected_bytes"] = want;
  r["size_ok"] = bytes == want;
  if (bytes != want)
    throw Defect{path + strfmt(": the header needs %llu bytes but the file has %llu (%s)", (unsigned long long)want,
                               (unsigned long long)bytes, bytes < want ? "truncated" : "trailing bytes")};
  // Every weight finite, as read_llmc_model requires; read in chunks (a model can be gigabytes).
  const bool bf16 = h[1] == kLlmcBf16;
  const uint64_t elem = bf16 ? 2 : 4, count = (bytes - sizeof h) / elem;
  std::vector<unsigned char> buf(size_t(1) << 20);
  uint64_t nonfinite = 0, first = 0;
  for (uint64_t at = 0; at < count;) {
    const uint64_t n = std::min<uint64_t>(count - at, buf.size() / elem);
    if (pread_full(fd, buf.data(), size_t(n * elem), sizeof h + at * elem, path) != n * elem)
      throw Defect{path + ": the file shrank while it was read"};
    for (uint64_t i = 0; i < n; ++i) {
      float x;
      if (bf16) {
        uint16_t b;
        std::memcpy(&b, buf.data() + i * 2, 2);
        x = bf16_to_f32(b);
      } else {
        std::memcpy(&x, buf.data() + i * 4, 4);
      }
      if (!std::isfinite(x) && nonfinite++ == 0) first = at + i;
    }
    at += n;
  }
  r["nonfinite_parameters"] = nonfinite;
  if (nonfinite > 0)
    throw Defect{path + strfmt(": %llu parameters are NaN or infinite (the first at %llu in file order): a damaged "
                               "file, weights must be finite",
                               (unsigned long long)nonfinite, (unsigned long long)first)};
}

// ---- checkpoints ------------------------------------------------------------------------------

void info_checkpoint(const std::string& path, uint64_t bytes, ojson& r) {
  r["format"] = "minicolossus checkpoint";
  r["bytes"] = bytes;
  nlohmann::json meta;
  try {
    meta = read_checkpoint_meta(path);  // structure and sizes; no checksum
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  for (const char* k : {"version", "step", "tokenizer", "data_dir", "seq", "global_batch", "world_size", "git"})
    if (meta.contains(k)) r[k] = meta[k];
  if (meta.contains("model")) r["model"] = meta["model"];
  if (meta.contains("config") && meta["config"].is_object() && meta["config"].contains("zero"))
    r["zero"] = meta["config"]["zero"];
  ojson tensors = ojson::array();
  if (meta.contains("tensors"))
    for (const auto& t : meta["tensors"]) tensors.push_back({{"name", t["name"]}, {"numel", t["numel"]}});
  r["tensors"] = tensors;
  // The one checksum: CRC-32 of every byte before the 16-byte trailer (checkpoint.h).
  CheckpointChecksum cs;
  try {
    cs = checkpoint_checksum(path);
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  r["checksum"] = {{"kind", "crc32 of the whole file before its trailer"},
                   {"stored", strfmt("%08x", cs.stored)},
                   {"computed", strfmt("%08x", cs.computed)},
                   {"ok", cs.stored == cs.computed}};
  if (cs.stored != cs.computed)
    throw Defect{path + strfmt(": checksum mismatch: CRC-32 computed %08x, stored %08x (the file is damaged)",
                               cs.computed, cs.stored)};
  // The checksum holds: now the metadata every command relies on (Note [Checkpoint metadata is input]).
  try {
    load_checkpoint(path);
    r["metadata_ok"] = true;
  } catch (const UsageError& e) {
    r["metadata_ok"] = false;
    throw Defect{e.what()};
  }
}

// ---- safetensors ------------------------------------------------------------------------------

void info_safetensors(const std::string& path, ojson& r) {
  r["format"] = "safetensors";
  SafetensorsFile f;
  try {
    f = read_safetensors_header(path, "");
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  r["bytes"] = f.file_bytes;
  r["header_bytes"] = f.header_bytes;
  r["metadata"] = f.metadata;
  r["tensor_count"] = f.tensors.size();
  std::set<std::string> dtypes;
  uint64_t total = 0;
  ojson tensors = ojson::array();
  for (const SafeTensorInfo& t : f.tensors) {
    dtypes.insert(t.dtype);
    total += t.numel();
  }
  r["dtypes"] = dtypes;
  r["parameters"] = total;
  // A Hugging Face GPT-2 state dict (what `export --format hf` writes): its shape in one line.
  auto find = [&](const std::string& n) -> const SafeTensorInfo* {
    for (const auto& t : f.tensors)
      if (t.name == n) return &t;
    return nullptr;
  };
  const SafeTensorInfo* wte = find("transformer.wte.weight");
  const SafeTensorInfo* wpe = find("transformer.wpe.weight");
  if (wte && wpe && wte->shape.size() == 2 && wpe->shape.size() == 2) {
    int layers = 0;
    while (find("transformer.h." + std::to_string(layers) + ".ln_1.weight")) ++layers;
    r["layout"] = strfmt("Hugging Face GPT-2: vocab %lld, positions %lld, %d layers, %lld channels",
                         (long long)wte->shape[0], (long long)wpe->shape[0], layers, (long long)wte->shape[1]);
  }
  for (const SafeTensorInfo& t : f.tensors) tensors.push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}});
  r["tensors"] = tensors;
}

// ---- tokenizers -------------------------------------------------------------------------------

// head: the file's first 16 bytes (magic, version, vocabulary, eot).
void info_llmc_tokenizer(const std::string& path, const unsigned char* head, uint64_t bytes, ojson& r) {
  r["format"] = "llm.c tokenizer";
  r["bytes"] = bytes;
  const int32_t version = le32(head + 4);
  r["version"] = version;
  r["vocab_size"] = le32(head + 8);
  if (version == 2) r["eot_token"] = le32(head + 12);
  std::vector<std::string> tokens;
  try {
    tokens = read_llmc_tokenizer(path);
  } catch (const UsageError& e) {
    throw Defect{e.what()};
  }
  uint64_t used = 1024;
  for (const std::string& t : tokens) used += 1 + t.size();
  r["trailing_bytes"] = bytes - std::min(bytes, used);
}

void info_tiktoken(const std::string& path, const std::string& text, ojson& r) {
  r["format"] = "tiktoken ranks (base64 token, rank per line)";
  r["bytes"] = text.size();
  size_t count = 0, lineno = 0;
  uint64_t lo = 0, hi = 0;
  std::set<uint64_t> ranks;
  std::string defect;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (line.empty()) continue;
    std::string tok;
    uint64_t rank = 0;
    if (!parse_tiktoken_line(line, &tok, &rank)) {
      defect = path + strfmt(": line %zu is not \"<base64> <rank>\"", lineno);
      break;
    }
    if (!ranks.insert(rank).second) {
      defect = path + strfmt(": line %zu repeats rank %llu", lineno, (unsigned long long)rank);
      break;
    }
    ++count;
    lo = count == 1 ? rank : std::min(lo, rank);
    hi = count == 1 ? rank : std::max(hi, rank);
  }
  r["tokens"] = count;
  if (count > 0) {
    r["min_rank"] = lo;
    r["max_rank"] = hi;
  }
  r["ranks_contiguous"] = count > 0 && lo == 0 && hi == count - 1;
  if (!defect.empty()) throw Defect{defect};
}

// tokenizer.json of a data directory, or a Hugging Face config.json.
bool info_json(const std::string& path, const std::string& text, ojson& r) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  if (j.contains("tokenizer") && j.contains("vocab_size") && !j.contains("model_type")) {
    r["format"] = "tokenizer.json (data directory)";
    r["tokenizer"] = j["tokenizer"];
    r["vocab_size"] = j["vocab_size"];
    std::string name;
    int vocab = 0;
    try {
      read_tokenizer_json(path, "", &name, &vocab);  // the checks open_data_dir makes
    } catch (const UsageError& e) {
      throw Defect{e.what()};
    }
    return true;
  }
  if (j.contains("model_type") && j["model_type"].is_string()) {
    r["format"] = "Hugging Face config.json";
    for (const char* k : {"model_type", "architectures", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                          "activation_function", "layer_norm_epsilon", "tie_word_embeddings"})
      if (j.contains(k)) r[k] = j[k];
    return true;
  }
  return false;
}

// ---- directories ------------------------------------------------------------------------------

void info_directory(const std::string& path, ojson& r) {
  const auto ckpts = list_checkpoints(path);
  std::error_code ec;
  const bool hf = fs::is_regular_file(fs::path(path) / "model.safetensors", ec) &&
                  fs::is_regular_file(fs::path(path) / "config.json", ec);
  bool has_shards = false;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".bin") == 0 &&
        (n.find("train") != std::string::npos || n.find("val") != std::string::npos))
      has_shards = true;
  }
  if (has_shards) {
    r["format"] = "data directory (prepare)";
    DataDir dd;
    try {
      dd = open_data_dir(path);
    } catch (const UsageError& e) {
      throw Defect{e.what()};
    }
    r["tokenizer"] = dd.tokenizer;
    r["vocab_size"] = dd.vocab_size;
    ojson shards = ojson::array();
    uint64_t totals[2] = {0, 0};
    std::string defect;
    int k = 0;
    for (const auto* files : {&dd.train_files, &dd.val_files}) {
      for (const std::string& f : *files) {
        ojson s = {{"split", k == 0 ? "train" : "val"}, {"file", fs::path(f).filename().string()}};
        try {
          TokenShard sh(f, dd.vocab_size);
          s["tokens"] = sh.size();
          s["fingerprint"] = hex64(sh.fingerprint());
          totals[k] += sh.size();
        } catch (const UsageError& e) {
          s["defect"] = e.what();
          if (defect.empty()) defect = e.what();
        }
        shards.push_back(s);
      }
      ++k;
    }
    r["train_tokens"] = totals[0];
    r["val_tokens"] = totals[1];
    r["shards"] = shards;
    if (!defect.empty()) throw Defect{defect};
    r["data_fingerprint"] = hex64(data_fingerprint(dd));
    return;
  }
  if (!ckpts.empty()) {
    r["format"] = "checkpoint directory";
    ojson list = ojson::array();
    for (const std::string& c : ckpts) list.push_back(fs::path(c).filename().string());
    r["checkpoints"] = list;
    r["newest"] = ckpts.front();
    return;
  }
  if (hf) {
    r["format"] = "Hugging Face model directory (model.safetensors + config.json)";
    // Filled in place: a damaged file still shows what could be read.
    info_safetensors((fs::path(path) / "model.safetensors").string(), r["model.safetensors"]);
    return;
  }
  throw UsageError(path + ": a directory holding no shards, checkpoints or Hugging Face model");
}

// ---- output -----------------------------------------------------------------------------------

// JSON text of v. Strings from the command line or a file need not be UTF-8 (a file name, a path a
// checkpoint recorded): invalid bytes become U+FFFD rather than an exception.
std::string dump(const ojson& v, int indent = -1) {
  return json_text(v, indent);
}

// The text form is "key: value" lines, and a file name, a path a checkpoint recorded or a safetensors
// metadata key may hold a newline (or a carriage return): every key and value goes through one_line.
std::string scalar_text(const ojson& v) { return one_line(v.is_string() ? v.get<std::string>() : dump(v)); }

void print_text(const ojson& r, const std::string& indent) {
  for (const auto& [k, v] : r.items()) {
    if (v.is_object() && !v.empty()) {
      std::printf("%s%s:\n", indent.c_str(), one_line(k).c_str());
      print_text(v, indent + "  ");
    } else if (v.is_array() && !v.empty() && v[0].is_object()) {
      // A long list (a model's tensors) shows its head and tail; --json has all of it.
      std::printf("%s%s: %zu\n", indent.c_str(), one_line(k).c_str(), v.size());
      const size_t n = v.size(), head = n > 16 ? 10 : n;
      for (size_t i = 0; i < n; ++i) {
        if (i == head && i < n - 3) {
          std::printf("%s  ... (%zu more; --json lists all)\n", indent.c_str(), n - head - 3);
          i = n - 3;
        }
        std::string line;
        for (const auto& [ek, ev] : v[i].items()) line += (line.empty() ? "" : "  ") + one_line(ek) + " " + scalar_text(ev);
        std::printf("%s  %s\n", indent.c_str(), line.c_str());
      }
    } else {
      std::printf("%s%s: %s\n", indent.c_str(), one_line(k).c_str(), scalar_text(v).c_str());
    }
  }
}

}  // namespace

int cmd_info(int argc, char** argv) {
  std::string path;
  bool json = false;
  CLI::App app("Describe a file minicolossus reads or writes (token shard, data directory, llm.c model or tokenizer, "
               "checkpoint, safetensors, tiktoken ranks), detected by content. Exit 0 when every check passes, "
               "2 for an unknown kind or a damaged file (what could be read is still printed).",
               "info");
  app.add_option("FILE", path, "file or directory")->required();
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  ojson r;
  r["file"] = path;
  std::string defect;
  try {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      info_directory(path, r);
    } else {
      const int fd = open_input_file(path, "");  // a FIFO or device: refused without blocking
      FdCloser closer(fd);
      const uint64_t bytes = file_size(fd, path);
      unsigned char head[16] = {};
      const size_t got = pread_full(fd, head, sizeof head, 0, path);
      const int32_t magic = got >= 4 ? le32(head) : 0;
      uint64_t n8 = 0;
      std::memcpy(&n8, head, 8);
      if (got >= 8 && std::memcmp(head, "MCCKPT01", 8) == 0) {
        info_checkpoint(path, bytes, r);
      } else if (magic == kShardMagic) {
        info_shard(path, head, bytes, r);
      } else if (magic == kLlmcModelMagic) {
        info_llmc_model(path, fd, bytes, r);
      } else if (magic == int32_t(kLlmcTokenizerMagic)) {
        info_llmc_tokenizer(path, head, bytes, r);
      } else if (got >= 9 && head[8] == '{' && n8 >= 2 && n8 <= (uint64_t(100) << 20)) {
        info_safetensors(path, r);
      } else {
        // Text formats: small enough to read whole.
        const std::string text = got > 0 && bytes <= (uint64_t(64) << 20) ? read_input_file(path, "") : std::string();
        std::string tok;
        uint64_t rank = 0;
        const std::string first = text.substr(0, text.find('\n'));
        if (!text.empty() && text[0] == '{' && info_json(path, text, r)) {
        } else if (!first.empty() && parse_tiktoken_line(first, &tok, &rank)) {
          info_tiktoken(path, text, r);
        } else {
          throw UsageError(path + ": unknown format (not a token shard, data directory, llm.c model or tokenizer, "
                                  "checkpoint, safetensors or tiktoken file)");
        }
      }
    }
  } catch (const Defect& d) {
    defect = d.message;
  }
  r["ok"] = defect.empty();
  if (!defect.empty()) r["defect"] = defect;
  if (json)
    std::printf("%s\n", dump(r, 2).c_str());
  else
    print_text(r, "");
  std::fflush(stdout);
  if (!defect.empty()) throw UsageError(defect);
  return 0;
}

}  // namespace mc
