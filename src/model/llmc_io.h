// llm.c model files (magic 20240326): the bridge to llm.c's and PyTorch's tools. Version 3 holds fp32
// parameters (llm.c's CPU trainer, and our default export), version 5 bf16 ones (what llm.c's GPU
// trainer train_gpt2.cu writes). Header of 256 int32: [0] magic, [1] version, [2] maxT, [3] V, [4] L,
// [5] NH, [6] C, [7] Vp; then the parameters grouped by kind (wte, wpe, all ln1w, all ln1b, ...), every
// one in the version's dtype, with no padding between them. Our buffer is layer-major
// (Note [Gradient readiness]); these functions map between the two by tensor name.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace mc {

constexpr int kLlmcModelMagic = 20240326;
constexpr int kLlmcFp32 = 3;  // version: fp32 parameters
constexpr int kLlmcBf16 = 5;  // version: bf16 parameters

struct LlmcModel {
  ModelConfig cfg;
  int version = kLlmcFp32;
  std::vector<float> params;  // in our ParamLayout order (bf16 files widened to fp32 exactly)
};

// Bounds every model configuration read from a file must meet (llm.c headers and checkpoints alike).
// They keep every size the model computes far from overflow, and reject what cannot train here.
constexpr int kMaxSeqLen = 1 << 16;      // maxT
constexpr int kMaxVocab = 1 << 16;       // V: tokens are uint16
constexpr int kMaxPaddedVocab = 1 << 17; // Vp
constexpr int kMaxLayers = 1 << 10;      // L
constexpr int kMaxChannels = 1 << 16;    // C
// Checks cfg against the bounds above and its own consistency (every field positive, Vp >= V,
// C % NH == 0) and returns the parameter count (ParamLayout total). Throws UsageError("<where>: ...")
// naming the field. The layout (at most kMaxLayers layers) is built only once the fields passed.
size_t validate_model_config(const ModelConfig& cfg, const std::string& where);

// The model an llm.c header (256 int32) describes, fields [2..7] as they are: not validated.
ModelConfig llmc_header_model(const int32_t* h);
// The bytes an llm.c model file of this (validated) configuration and version (3 or 5) has.
uint64_t llmc_model_bytes(const ModelConfig& cfg, int version);

// Throws UsageError("<path>: <what is wrong>") for a missing file, bad magic, unsupported version
// (3 = fp32 and 5 = bf16 are read), inconsistent sizes or a truncated file.
// The file is opened with open_input_file (a FIFO, directory or device is refused without blocking;
// the message names `what`, e.g. "--init-from"), and its size is checked against the header's
// before anything is allocated.
LlmcModel read_llmc_model(const std::string& path, const std::string& what = "--init-from");
// Writes atomically (temp + rename). params in our ParamLayout order. version kLlmcBf16 rounds every
// parameter to the nearest bf16 (ties to even: f32_to_bf16 in core/dtype.h), as llm.c's own
// conversion does; reading widens bf16 exactly.
void write_llmc_model(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params,
                      int version = kLlmcFp32);

}  // namespace mc
