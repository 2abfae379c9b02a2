// llm.c model files (magic 20240326, version 3 = fp32): the bridge to llm.c's and PyTorch's tools.
// Header of 256 int32: [0] magic, [1] version, [2] maxT, [3] V, [4] L, [5] NH, [6] C, [7] Vp; then the
// parameters grouped by kind (wte, wpe, all ln1w, all ln1b, ...). Our buffer is layer-major
// (Note [Gradient readiness]); these functions map between the two by tensor name.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace mc {

struct LlmcModel {
  ModelConfig cfg;
  std::vector<float> params;  // in our ParamLayout order
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

// Throws UsageError("<path>: <what is wrong>") for a missing file, bad magic, unsupported version
// (only fp32 version 3), inconsistent sizes or a truncated file.
// The file is opened with open_input_file (a FIFO, directory or device is refused without blocking;
// the message names `what`, e.g. "--init-from"), and its size is checked against the header's
// before anything is allocated.
LlmcModel read_llmc_model(const std::string& path, const std::string& what = "--init-from");
// Writes atomically (temp + rename). params in our ParamLayout order.
void write_llmc_model(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params);

}  // namespace mc
