// GPT-2: configuration presets, the flat parameter layout, and forward/backward written once
// against the Ops interface.
// Invariants: parameters (compute copy, act dtype) and gradients (fp32) are each ONE contiguous
// buffer; every named tensor is a view at a fixed element offset given by ParamLayout. The layout is
// layer-major with wte/wpe first and lnf last, so that backward finishes gradients from the END of the
// buffer towards the start (Note [Gradient readiness]); backward() reports that progress to a callback.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ops/ops.h"

namespace mc {

struct ModelConfig {
  int max_seq_len = 128;  // maxT: positions the model knows
  int vocab_size = 256;   // V
  int padded_vocab_size = 256;  // Vp: V rounded up to a multiple of 128 (llm.c)
  int num_layers = 4;     // L
  int num_heads = 4;      // NH
  int channels = 128;     // C
};

// Presets: tiny, d6, d12 (GPT-2 124M), d24, d36, d48. Vocabulary comes from the data.
// Throws UsageError naming --model for an unknown preset.
ModelConfig model_preset(const std::string& name, int vocab_size);
std::vector<std::string> model_preset_names();
int pad_vocab(int V);

struct ParamTensor {
  std::string name;  // e.g. "wte", "h.3.qkvw", "lnf.w"
  size_t offset = 0;  // in elements, into the flat buffer
  size_t numel = 0;
  int layer = -1;  // -1 for wte, wpe, lnf
  bool decay = false;  // 2-D weights get weight decay; biases and LayerNorm do not
};

struct ParamLayout {
  std::vector<ParamTensor> tensors;  // in buffer order
  std::unordered_map<std::string, size_t> index;  // name -> position in tensors
  size_t total = 0;
  const ParamTensor& find(const std::string& name) const;  // throws RuntimeError if unknown
};
ParamLayout make_layout(const ModelConfig& cfg);

// Parameter count without position embeddings (the N of the 6N MFU formula).
size_t flops_param_count(const ModelConfig& cfg);
// Training FLOPs per token: 6N + 12*L*C*T (PaLM / nanoGPT).
double flops_per_token(const ModelConfig& cfg, int T);

// GPT-2 initialisation on the host in fp32: N(0, 0.02) weights, residual projections scaled by
// 1/sqrt(2L), zero biases, unit LayerNorm gains. Deterministic in seed.
std::vector<float> gpt2_init(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed);

class GPT2 {
 public:
  // Allocates parameters, gradients and activations for batches up to B x T on ops.
  GPT2(const ModelConfig& cfg, Ops& ops, int B, int T);
  // Bytes the constructor would allocate for these sizes (exactly; a double so that absurd plans
  // cannot overflow).
  static double memory_bytes(const ModelConfig& cfg, int B, int T, DType act_dtype);
  // The part of it that grows with B x T: activations, their gradients' scratch, the token buffers.
  static double activation_bytes(const ModelConfig& cfg, int B, int T, DType act_dtype) {
    return memory_bytes(cfg, B, T, act_dtype) - memory_bytes(cfg, 0, 0, act_dtype);
  }
  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Ops& ops() { return ops_; }
  int max_batch() const { return B_; }
  int max_seq() const { return T_; }

  Ptr params() const { return params_.ptr(ops_.act_dtype()); }  // compute copy
  float* grads() const { return grads_.f32(); }                  // fp32, same layout
  size_t num_params() const { return layout_.total; }
  Ptr param(const std::string& name) const { return params().at(layout_.find(name).offset); }
  float* grad(const std::string& name) const { return grads() + layout_.find(name).offset; }

  // Sets the compute copy from fp32 host values (layout order).
  void set_params(const std::vector<float>& host);
  // Reads the compute copy back to fp32 host values.
  std::vector<float> get_params() const;
  void zero_grads();

  // Forward on host tokens (b x t, b <= max_batch, t <= max_seq). With targets, computes the
  // per-token losses and returns their mean; without, returns 0 and leaves logits_at() valid.
  // With targets and grad_scale > 0, the logits are replaced in place by the gradient of
  // grad_scale * (mean loss) (fused softmax + cross-entropy + dlogits), ready for backward().
  double forward(const int* inputs, const int* targets, int b, int t, float grad_scale = 0.0f);
  // Backward of the last forward (which must have had targets and grad_scale > 0): ADDS
  // d(grad_scale * mean loss)/dθ into grads(). on_ready(e), if given, is called whenever gradients at
  // element offsets >= e are final (Note [Gradient readiness] in gpt2.cpp); the last call has e == 0.
  void backward(const std::function<void(size_t)>& on_ready = nullptr);
  // Logits of position pos of row b of the last forward, as fp32 host values (V of them).
  std::vector<float> logits_at(int b, int pos) const;

  // ---- KV cache: one sequence, position by position (Note [KV cache] in gpt2.cpp) ----
  // Whether the ops implement attention_decode (the cpu and cuda ops do; otherwise sampling recomputes).
  bool kv_cache_supported() const { return ops_.supports_kv_cache(); }
  // Forgets the cached positions: the next forward_cached() starts at position 0.
  void kv_reset() { kv_len_ = 0; }
  int kv_len() const { return kv_len_; }  // positions cached so far
  // Runs tokens[0..t) at positions kv_len() .. kv_len()+t-1 of one sequence (kv_len() + t <= max_seq();
  // every token < vocab_size), appending their keys and values to the cache, and returns the logits
  // of the last of them (vocab_size fp32 values). The first call allocates the cache (L x max_seq x
  // 2C act-dtype values, not counted in memory_bytes()). It reuses forward()'s activation buffers, so
  // logits_at() and backward() refuse until the next forward().
  std::vector<float> forward_cached(const int* tokens, int t);

 private:
  static std::vector<std::pair<Buffer GPT2::*, size_t>> buffer_plan(const ModelConfig& cfg, size_t num_params, int B,
                                                                    int T, DType act_dtype);
  ModelConfig cfg_;
  ParamLayout layout_;
  Ops& ops_;
  int B_, T_;
  int cur_b_ = 0, cur_t_ = 0;
  bool have_dlogits_ = false;
  Buffer params_, grads_;
  // activations (act dtype unless noted)
  Buffer encoded_, ln1_, ln1_mean_, ln1_rstd_, qkv_, atty_, att_lse_, attproj_, residual2_, ln2_,
      ln2_mean_, ln2_rstd_, fch_, fch_gelu_, fcproj_, residual3_, lnf_, lnf_mean_, lnf_rstd_, logits_,
      losses_, inputs_, targets_;
  // gradient scratch (act dtype), reused across layers
  Buffer dres_, dbuf_c_, dbuf_3c_, dbuf_4c_, dbuf_4c2_, dlnf_;
  // KV cache (allocated by the first forward_cached()): layer l's keys/values of position p at
  // element (l * T_ + p) * C
  Buffer kcache_, vcache_;
  int kv_len_ = 0;
  std::vector<float> logits_row(size_t row) const;  // row of logits_ as fp32 host values (V of them)
  void block_forward(int l, Ptr x, int N, int s, const std::function<void(Ptr, Ptr)>& attend);
};

}  // namespace mc
