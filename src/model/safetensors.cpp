// safetensors writing and checked reading (see safetensors.h).
#include "model/safetensors.h"
#include "model/hf_tokenizer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/errors.h"
#include "core/json.h"
#include "core/files.h"

namespace mc {

namespace {
// Hugging Face's reader refuses headers above 100 MB; so do we (ours are a few kilobytes per layer).
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

uint64_t numel_of(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}
}  // namespace

uint64_t SafeTensorInfo::numel() const { return numel_of(shape); }

size_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

std::string safetensors_header(const std::vector<SafeTensorOut>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps "__metadata__" first and the tensors in file order: easier to read with head -c.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t off = 0;
  for (const SafeTensorOut& t : tensors) {
    MC_REQUIRE(!t.name.empty() && t.name != "__metadata__", "safetensors: invalid tensor name '%s'", t.name.c_str());
    MC_REQUIRE(seen.insert(t.name).second, "safetensors: tensor %s given twice", t.name.c_str());
    for (int64_t d : t.shape) MC_REQUIRE(d >= 0, "safetensors: tensor %s has a negative dimension", t.name.c_str());
    const uint64_t bytes = numel_of(t.shape) * sizeof(float);
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  // Metadata values need not be UTF-8 (a source file's name): invalid bytes become U+FFFD, as JSON must.
  std::string s = json_text(h);
  // The data buffer starts at 8 + header size; pad with spaces (JSON whitespace) to a multiple of 8.
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

void write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = safetensors_header(tensors, metadata);
  const uint64_t n = header.size();  // the format's length prefix is little-endian, as is every host we build for
  std::vector<std::pair<const void*, size_t>> parts = {{&n, 8}, {header.data(), header.size()}};
  for (const SafeTensorOut& t : tensors) parts.emplace_back(t.data, size_t(numel_of(t.shape)) * sizeof(float));
  write_file_atomic(path, parts);
}

SafetensorsFile read_safetensors_header(const std::string& path, const std::string& what) {
  const std::string who = what.empty() ? path : what + " " + path;
  const int fd = open_input_file(path, what);
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(who + ": cannot stat: " + std::strerror(errno));
  SafetensorsFile f;
  f.path = path;
  f.file_bytes = uint64_t(st.st_size);
  uint64_t n = 0;
  if (f.file_bytes < 8 || pread_full(fd, &n, 8, 0, path) != 8)
    throw UsageError(who + strfmt(": truncated safetensors file (%llu bytes, no header length)",
                                  (unsigned long long)f.file_bytes));
  if (n > kMaxHeaderBytes)
    throw UsageError(who + strfmt(": safetensors header of %llu bytes (at most %llu are accepted)",
                                  (unsigned long long)n, (unsigned long long)kMaxHeaderBytes));
  if (n > f.file_bytes - 8)
    throw UsageError(who + strfmt(": truncated safetensors file (header of %llu bytes, file has %llu)",
                                  (unsigned long long)n, (unsigned long long)f.file_bytes));
  f.header_bytes = n;
  f.data_offset = 8 + n;
  std::string text(size_t(n), '\0');
  if (pread_full(fd, text.data(), text.size(), 8, path) != text.size())
    throw UsageError(who + ": truncated safetensors file (header cut off)");
  const nlohmann::json h = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) throw UsageError(who + ": safetensors header is not a JSON object");
  const uint64_t room = f.file_bytes - f.data_offset;
  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw UsageError(who + ": safetensors __metadata__ is not an object");
      for (const auto& [k, x] : v.items()) {
        if (!x.is_string()) throw UsageError(who + ": safetensors __metadata__ value of '" + k + "' is not a string");
        f.metadata[k] = x.get<std::string>();
      }
      continue;
    }
    const std::string t = "safetensors tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() || !v.contains("shape") ||
        !v["shape"].is_array() || !v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2 || !v["data_offsets"][0].is_number_unsigned() ||
        !v["data_offsets"][1].is_number_unsigned())
      throw UsageError(who + ": " + t + " needs \"dtype\", \"shape\" and two unsigned \"data_offsets\"");
    SafeTensorInfo ti;
    ti.name = name;
    ti.dtype = v["dtype"].get<std::string>();
    const size_t es = safetensors_dtype_size(ti.dtype);
    if (es == 0) throw UsageError(who + ": " + t + " has unknown dtype '" + ti.dtype + "'");
    ti.begin = v["data_offsets"][0].get<uint64_t>();
    ti.end = v["data_offsets"][1].get<uint64_t>();
    if (ti.begin > ti.end || ti.end > room)
      throw UsageError(who + strfmt(": %s has data_offsets [%llu, %llu) outside the %llu-byte data buffer (truncated?)",
                                    t.c_str(),
                                    (unsigned long long)ti.begin, (unsigned long long)ti.end,
                                    (unsigned long long)room));
    // The element count, bounded by the bytes the tensor claims (so the product cannot overflow).
    uint64_t numel = 1;
    const uint64_t cap = (ti.end - ti.begin) / es;
    bool zero = false;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw UsageError(who + ": " + t + " has a shape entry that is not a size");
      ti.shape.push_back(int64_t(std::min<uint64_t>(d.get<uint64_t>(), uint64_t(INT64_MAX))));
      if (d.get<uint64_t>() == 0) zero = true;
    }
    if (!zero) {
      for (int64_t d : ti.shape) {
        if (uint64_t(d) > cap / numel) {
          numel = cap + 1;  // more than the bytes hold
          break;
        }
        numel *= uint64_t(d);
      }
    } else {
      numel = 0;
    }
    if (numel * es != ti.end - ti.begin)
      throw UsageError(who + strfmt(": %s has %llu bytes of data but its shape and dtype %s need %s", t.c_str(),
                                    (unsigned long long)(ti.end - ti.begin), ti.dtype.c_str(),
                                    numel > cap ? "more" : std::to_string(numel * es).c_str()));
    f.tensors.push_back(std::move(ti));
  }
  std::sort(f.tensors.begin(), f.tensors.end(), [](const SafeTensorInfo& a, const SafeTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const SafeTensorInfo& ti : f.tensors) {
    if (ti.begin != at)
      throw UsageError(who + strfmt(": safetensors data of '%s' starts at %llu, expected %llu (%s)", ti.name.c_str(),
                                    (unsigned long long)ti.begin, (unsigned long long)at,
                                    ti.begin < at ? "overlap" : "hole"));
    at = ti.end;
  }
  if (at != room)
    throw UsageError(who + strfmt(": safetensors data buffer has %llu bytes but the tensors cover %llu (trailing bytes)",
                                  (unsigned long long)room, (unsigned long long)at));
  return f;
}

std::vector<float> read_safetensor_f32(const SafetensorsFile& f, const std::string& name) {
  const auto it = std::find_if(f.tensors.begin(), f.tensors.end(), [&](const auto& t) { return t.name == name; });
  if (it == f.tensors.end()) throw UsageError(f.path + ": no tensor '" + name + "'");
  if (it->dtype != "F32") throw UsageError(f.path + ": tensor '" + name + "' is " + it->dtype + ", not F32");
  const int fd = open_input_file(f.path, "");
  FdCloser closer(fd);
  std::vector<float> v(size_t(it->numel()));
  const size_t bytes = v.size() * sizeof(float);
  if (pread_full(fd, v.data(), bytes, f.data_offset + it->begin, f.path) != bytes)
    throw UsageError(f.path + ": truncated safetensors file (tensor '" + name + "' cut off)");
  return v;
}

// ---- Hugging Face GPT-2 (Note [Hugging Face GPT-2 names]) -------------------------------------

std::vector<SafeTensorOut> hf_gpt2_tensors(const ModelConfig& c, const std::vector<float>& params,
                                           std::vector<std::vector<float>>* storage) {
  const ParamLayout lay = make_layout(c);
  MC_CHECK(params.size() == lay.total, "%zu != %zu", params.size(), lay.total);
  const int64_t C = c.channels;
  std::vector<SafeTensorOut> out;
  storage->clear();
  storage->reserve(size_t(4) * size_t(c.num_layers));  // views into it must stay valid
  auto view = [&](const std::string& name, const std::string& ours, std::vector<int64_t> shape) {
    out.push_back({name, std::move(shape), params.data() + lay.find(ours).offset});
  };
  // Conv1D weight: ours is (OC, IC) row-major; Hugging Face's is (IC, OC).
  auto transposed = [&](const std::string& name, const std::string& ours, int64_t OC, int64_t IC) {
    const float* w = params.data() + lay.find(ours).offset;
    std::vector<float>& t = storage->emplace_back(size_t(OC * IC));
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t i = 0; i < IC; ++i) t[size_t(i * OC + o)] = w[o * IC + i];
    out.push_back({name, {IC, OC}, t.data()});
  };
  view("transformer.wte.weight", "wte", {c.vocab_size, C});  // the first V of Vp rows
  view("transformer.wpe.weight", "wpe", {c.max_seq_len, C});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string h = "transformer.h." + std::to_string(l) + ".", p = "h." + std::to_string(l) + ".";
    view(h + "ln_1.weight", p + "ln1w", {C});
    view(h + "ln_1.bias", p + "ln1b", {C});
    transposed(h + "attn.c_attn.weight", p + "qkvw", 3 * C, C);
    view(h + "attn.c_attn.bias", p + "qkvb", {3 * C});
    transposed(h + "attn.c_proj.weight", p + "attprojw", C, C);
    view(h + "attn.c_proj.bias", p + "attprojb", {C});
    view(h + "ln_2.weight", p + "ln2w", {C});
    view(h + "ln_2.bias", p + "ln2b", {C});
    transposed(h + "mlp.c_fc.weight", p + "fcw", 4 * C, C);
    view(h + "mlp.c_fc.bias", p + "fcb", {4 * C});
    transposed(h + "mlp.c_proj.weight", p + "fcprojw", C, 4 * C);
    view(h + "mlp.c_proj.bias", p + "fcprojb", {C});
  }
  view("transformer.ln_f.weight", "lnf.w", {C});
  view("transformer.ln_f.bias", "lnf.b", {C});
  return out;
}

std::string hf_gpt2_config_json(const ModelConfig& c) {
  const bool gpt2_vocab = c.vocab_size == 50257;
  nlohmann::ordered_json j = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"vocab_size", c.vocab_size},
      {"n_positions", c.max_seq_len},
      {"n_ctx", c.max_seq_len},
      {"n_embd", c.channels},
      {"n_layer", c.num_layers},
      {"n_head", c.num_heads},
      {"n_inner", nullptr},  // 4 * n_embd
      {"activation_function", "gelu_new"},  // tanh approximation, as our GELU
      {"layer_norm_epsilon", 1e-5},
      {"resid_pdrop", 0.0},
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"initializer_range", 0.02},
      {"scale_attn_weights", true},
      {"tie_word_embeddings", true},
      {"bos_token_id", gpt2_vocab ? nlohmann::ordered_json(50256) : nlohmann::ordered_json(nullptr)},
      {"eos_token_id", gpt2_vocab ? nlohmann::ordered_json(50256) : nlohmann::ordered_json(nullptr)},
      {"torch_dtype", "float32"},
      {"use_cache", true},
  };
  return j.dump(2) + "\n";
}

std::vector<std::string> write_hf_gpt2(const std::string& dir, const ModelConfig& c,
                                       const std::vector<float>& params, std::map<std::string, std::string> metadata,
                                       const std::string& tokenizer) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    MC_REQUIRE(S_ISDIR(st.st_mode), "--out %s: exists and is not a directory (%s)", dir.c_str(),
               S_ISREG(st.st_mode) ? "a regular file" : file_kind(st.st_mode).c_str());
  } else if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw UsageError(strfmt("--out %s: cannot create the directory: %s", dir.c_str(), std::strerror(errno)));
  }
  // Everything is made (the tokenizer's merges need the ranks file) and every target checked before the
  // first file is written, so a refusal leaves the directory as it was.
  std::vector<std::pair<std::string, std::string>> text_files = {{"config.json", hf_gpt2_config_json(c)}};
  // The tokenizer's files are a convenience: without GPT-2's ranks file (or with a bad one) the weights
  // and config are still written, with a warning saying why the tokenizer is not.
  try {
    for (auto& f : hf_tokenizer_files(tokenizer, c.max_seq_len)) text_files.push_back(std::move(f));
  } catch (const UsageError& e) {
    std::fprintf(stderr, "warning: not writing the tokenizer's files: %s\n", one_line(e.what()).c_str());
  }
  const std::string st_path = dir + "/model.safetensors";
  check_output_path(st_path, "--out");
  for (const auto& [name, text] : text_files) check_output_path(dir + "/" + name, "--out");
  std::vector<std::vector<float>> storage;
  const std::vector<SafeTensorOut> tensors = hf_gpt2_tensors(c, params, &storage);
  metadata["format"] = "pt";  // what transformers expects of a PyTorch state dict
  write_safetensors(st_path, tensors, metadata);
  std::vector<std::string> names = {"model.safetensors"};
  for (const auto& [name, text] : text_files) {
    write_file_atomic(dir + "/" + name, {{text.data(), text.size()}});
    names.push_back(name);
  }
  return names;
}

}  // namespace mc
