// The safetensors format (Hugging Face's weight files), written and read by our own code.
// Layout: uint64 little-endian N, then N bytes of JSON header, then the data buffer. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data
// buffer), plus an optional "__metadata__" object of string values. The tensors tile the data buffer
// exactly: no holes, no overlap, nothing after the last one.
// Invariants of what we write: the header is padded with spaces so that the data starts at a multiple
// of 8 bytes; tensors are stored in the order given, contiguously; only F32 is written; the file
// appears atomically (write_file_atomic).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace mc {

struct SafeTensorOut {
  std::string name;
  std::vector<int64_t> shape;  // row-major; the product is the element count of data
  const float* data = nullptr;
};

// The header text write_safetensors writes (JSON, space-padded so that 8 + its size is a multiple of 8).
std::string safetensors_header(const std::vector<SafeTensorOut>& tensors,
                               const std::map<std::string, std::string>& metadata);
// Writes path atomically. UsageError for an empty or duplicate name or a negative dimension (the
// caller's bug, but worded for the user); RuntimeError on I/O failure.
void write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

struct SafeTensorInfo {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer
  uint64_t numel() const;
};

struct SafetensorsFile {
  std::string path;
  uint64_t header_bytes = 0;  // N
  uint64_t data_offset = 0;   // 8 + N
  uint64_t file_bytes = 0;
  std::map<std::string, std::string> metadata;
  std::vector<SafeTensorInfo> tensors;  // in data-offset order
};

// Bytes per element of a safetensors dtype name ("F32" 4, "BF16" 2, ...); 0 if unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// Reads and fully checks the header against the file size (nothing is allocated from a size the file
// cannot hold): JSON object, every entry's dtype known, shape non-negative, (end - begin) = numel x
// element size, the tensors tiling the data buffer up to the end of the file. UsageError("<what>
// <path>: <what is wrong>") otherwise; a FIFO, directory or device is refused without blocking.
SafetensorsFile read_safetensors_header(const std::string& path, const std::string& what);
// One F32 tensor's values (UsageError naming it if absent or not F32).
std::vector<float> read_safetensor_f32(const SafetensorsFile& f, const std::string& name);

// ---- Hugging Face GPT-2 ----------------------------------------------------------------------
// Note [Hugging Face GPT-2 names]
// transformers' GPT2LMHeadModel names its parameters transformer.wte.weight (V x C: the real
// vocabulary, not our padded Vp rows), transformer.wpe.weight (maxT x C), per layer i
// transformer.h.{i}.ln_1.{weight,bias}, .attn.c_attn.*, .attn.c_proj.*, .ln_2.*, .mlp.c_fc.*,
// .mlp.c_proj.*, and transformer.ln_f.*. Its linear layers are Conv1D modules, which store the weight as
// (in, out): the transpose of our (OC, C). q, k and v are concatenated along the output in the same
// order as ours. The head lm_head.weight is tied to wte and left out of the file (transformers ties it on
// load). The model itself matches ours: GELU with the tanh approximation ("gelu_new") and LayerNorm eps
// 1e-5 (src/ops/cpu/cpu_ops.cpp), attention scaled by 1/sqrt(head size).

// The tensors of a Hugging Face GPT-2 state dict for params (ParamLayout order), transposed and cut
// to V rows as the note says; `storage` owns the copies the returned views point into.
std::vector<SafeTensorOut> hf_gpt2_tensors(const ModelConfig& cfg, const std::vector<float>& params,
                                           std::vector<std::vector<float>>* storage);
// config.json for transformers' GPT2Config. bos/eos are <|endoftext|> (50256) only for the GPT-2
// vocabulary (V = 50257); null otherwise.
std::string hf_gpt2_config_json(const ModelConfig& cfg);
// Writes DIR/model.safetensors, DIR/config.json and, for tokenizer "gpt2" or "byte", the tokenizer's
// files (model/hf_tokenizer.h), each atomically; DIR is created if missing, its parent must exist.
// metadata goes into the safetensors header next to {"format": "pt"}. Returns the names written.
std::vector<std::string> write_hf_gpt2(const std::string& dir, const ModelConfig& cfg,
                                       const std::vector<float>& params, std::map<std::string, std::string> metadata,
                                       const std::string& tokenizer);

}  // namespace mc
