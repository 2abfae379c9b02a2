// llm.c model files (magic 20240326, version 3 = fp32): the bridge to llm.c's and PyTorch's tools.
// Header of 256 int32: [0] magic, [1] version, [2] maxT, [3] V, [4] L, [5] NH, [6] C, [7] Vp; then the
// parameters grouped by kind (wte, wpe, all ln1w, all ln1b, ...). Our buffer is layer-major
// (Note [Gradient readiness]); these functions map between the two by tensor name.
#pragma once
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace mc {

struct LlmcModel {
  ModelConfig cfg;
  std::vector<float> params;  // in our ParamLayout order
};

// Throws UsageError("<path>: <what is wrong>") for a missing file, bad magic, unsupported version
// (only fp32 version 3), inconsistent sizes or a truncated file.
LlmcModel read_llmc_model(const std::string& path);
// Writes atomically (temp + rename). params in our ParamLayout order.
void write_llmc_model(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params);

}  // namespace mc
