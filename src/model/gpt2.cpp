// GPT-2 presets, flat parameter layout, initialisation, and the forward/backward pass written once
// against the Ops interface (so the cpu and cuda backends share every line of model logic).
#include "model/gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/errors.h"
#include "core/rng.h"

namespace mc {

// ---- presets ---------------------------------------------------------------------------------

namespace {
struct Preset {
  const char* name;
  int L, C, NH, maxT;
};
// tiny is for tests and the default run; the dN presets follow GPT-2 / llm.c (d12 = GPT-2 124M).
const Preset kPresets[] = {
    {"tiny", 4, 128, 4, 128},   {"d6", 6, 384, 6, 1024},     {"d12", 12, 768, 12, 1024},
    {"d24", 24, 1024, 16, 1024}, {"d36", 36, 1280, 20, 1024}, {"d48", 48, 1600, 25, 1024},
};
}  // namespace

int pad_vocab(int V) { return (V + 127) / 128 * 128; }

std::vector<std::string> model_preset_names() {
  std::vector<std::string> v;
  for (const auto& p : kPresets) v.push_back(p.name);
  return v;
}

ModelConfig model_preset(const std::string& name, int vocab_size) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.num_layers = p.L;
    c.channels = p.C;
    c.num_heads = p.NH;
    c.max_seq_len = p.maxT;
    c.vocab_size = vocab_size;
    c.padded_vocab_size = pad_vocab(vocab_size);
    return c;
  }
  std::string names;
  for (const auto& n : model_preset_names()) names += (names.empty() ? "" : "|") + n;
  throw UsageError("--model: unknown preset '" + name + "' (expected " + names + ")");
}

// ---- layout ----------------------------------------------------------------------------------

// Note [Gradient readiness]
// Backward runs classifier -> lnf -> layer L-1 -> ... -> layer 0 -> embeddings. With the buffer laid
// out as [wte, wpe, layer 0, ..., layer L-1, lnf], the gradients become final strictly from the END
// of the buffer towards the start: after lnf, every element at offset >= off(lnf) is final; after
// layer l, every element >= off(layer l) is; wte is last (the tied classifier writes it first and the
// encoder last). So "ready" is one number, and gradient buckets are simply byte ranges walked from the
// end of the buffer (src/dist/buckets.h). llm.c's model file orders tensors by kind instead; import
// and export map between the two through the names.
ParamLayout make_layout(const ModelConfig& c) {
  ParamLayout lay;
  const size_t C = c.channels, Vp = c.padded_vocab_size, maxT = c.max_seq_len;
  auto add = [&](const std::string& name, size_t n, int layer, bool decay) {
    lay.index[name] = lay.tensors.size();
    lay.tensors.push_back({name, lay.total, n, layer, decay});
    lay.total += n;
  };
  add("wte", Vp * C, -1, true);
  add("wpe", maxT * C, -1, true);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    add(p + "ln1w", C, l, false);
    add(p + "ln1b", C, l, false);
    add(p + "qkvw", 3 * C * C, l, true);
    add(p + "qkvb", 3 * C, l, false);
    add(p + "attprojw", C * C, l, true);
    add(p + "attprojb", C, l, false);
    add(p + "ln2w", C, l, false);
    add(p + "ln2b", C, l, false);
    add(p + "fcw", 4 * C * C, l, true);
    add(p + "fcb", 4 * C, l, false);
    add(p + "fcprojw", C * 4 * C, l, true);
    add(p + "fcprojb", C, l, false);
  }
  add("lnf.w", C, -1, false);
  add("lnf.b", C, -1, false);
  return lay;
}

const ParamTensor& ParamLayout::find(const std::string& name) const {
  auto it = index.find(name);
  if (it != index.end()) return tensors[it->second];
  throw RuntimeError("no parameter tensor named '" + name + "'");
}

size_t flops_param_count(const ModelConfig& c) {
  return make_layout(c).total - size_t(c.max_seq_len) * c.channels;
}

double flops_per_token(const ModelConfig& c, int T) {
  return 6.0 * double(flops_param_count(c)) + 12.0 * c.num_layers * c.channels * double(T);
}

std::vector<float> gpt2_init(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed) {
  std::vector<float> w(layout.total, 0.0f);
  const float resid_std = 0.02f / std::sqrt(2.0f * cfg.num_layers);
  const size_t kChunk = 1 << 16;  // each chunk has its own stream: parallel and thread-count independent
  for (size_t ti = 0; ti < layout.tensors.size(); ++ti) {
    const ParamTensor& t = layout.tensors[ti];
    const std::string& n = t.name;
    auto ends = [&](const char* s) { return n.size() >= std::strlen(s) && n.compare(n.size() - std::strlen(s), std::strlen(s), s) == 0; };
    float* p = w.data() + t.offset;
    if (ends("ln1w") || ends("ln2w") || n == "lnf.w") {
      for (size_t i = 0; i < t.numel; ++i) p[i] = 1.0f;
      continue;
    }
    if (!t.decay) continue;  // biases stay 0
    const float stdv = (ends("attprojw") || ends("fcprojw")) ? resid_std : 0.02f;
    size_t n_init = t.numel;
    if (n == "wte") n_init = size_t(cfg.vocab_size) * cfg.channels;  // padded rows stay 0
    const size_t nchunks = (n_init + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (size_t ch = 0; ch < nchunks; ++ch) {
      Rng rng(seed, ti * 1000003ull + ch);
      const size_t end = std::min(n_init, (ch + 1) * kChunk);
      for (size_t i = ch * kChunk; i < end; ++i) p[i] = stdv * rng.normal();
    }
  }
  return w;
}

// ---- the model -------------------------------------------------------------------------------

// Every buffer GPT2 allocates, with its size: the constructor allocates from this list and
// memory_bytes() sums it, so the memory estimate can never drift from what is allocated.
std::vector<std::pair<Buffer GPT2::*, size_t>> GPT2::buffer_plan(const ModelConfig& cfg, size_t num_params, int B,
                                                                 int T, DType at) {
  const size_t as = dtype_size(at), fs = sizeof(float);
  const size_t L = size_t(cfg.num_layers), C = size_t(cfg.channels), NH = size_t(cfg.num_heads),
               Vp = size_t(cfg.padded_vocab_size);
  const size_t N = size_t(B) * size_t(T);
  return {{&GPT2::params_, num_params * as},
          {&GPT2::grads_, num_params * fs},
          {&GPT2::encoded_, N * C * as},
          {&GPT2::ln1_, L * N * C * as},
          {&GPT2::ln1_mean_, L * N * fs},
          {&GPT2::ln1_rstd_, L * N * fs},
          {&GPT2::qkv_, L * N * 3 * C * as},
          {&GPT2::atty_, L * N * C * as},
          {&GPT2::att_lse_, L * size_t(B) * NH * size_t(T) * fs},
          {&GPT2::attproj_, L * N * C * as},
          {&GPT2::residual2_, L * N * C * as},
          {&GPT2::ln2_, L * N * C * as},
          {&GPT2::ln2_mean_, L * N * fs},
          {&GPT2::ln2_rstd_, L * N * fs},
          {&GPT2::fch_, L * N * 4 * C * as},
          {&GPT2::fch_gelu_, L * N * 4 * C * as},
          {&GPT2::fcproj_, L * N * C * as},
          {&GPT2::residual3_, L * N * C * as},
          {&GPT2::lnf_, N * C * as},
          {&GPT2::lnf_mean_, N * fs},
          {&GPT2::lnf_rstd_, N * fs},
          {&GPT2::logits_, N * Vp * as},
          {&GPT2::losses_, N * fs},
          {&GPT2::inputs_, N * sizeof(int)},
          {&GPT2::targets_, N * sizeof(int)},
          {&GPT2::dres_, N * C * as},
          {&GPT2::dbuf_c_, N * C * as},
          {&GPT2::dbuf_3c_, N * 3 * C * as},
          {&GPT2::dbuf_4c_, N * 4 * C * as},
          {&GPT2::dbuf_4c2_, N * 4 * C * as},
          {&GPT2::dlnf_, N * C * as}};
}

double GPT2::memory_bytes(const ModelConfig& cfg, int B, int T, DType act_dtype) {
  double total = 0;  // double: an absurd plan must not wrap around to a small number
  const double scale = double(B) * double(T);
  // Sizes grow linearly in B*T (or not at all), so evaluate at B=T=1 and scale: no size_t overflow.
  const size_t n = make_layout(cfg).total;
  const auto per_token = buffer_plan(cfg, n, 1, 1, act_dtype);
  const auto fixed = buffer_plan(cfg, n, 0, 0, act_dtype);
  for (size_t i = 0; i < per_token.size(); ++i)
    total += double(fixed[i].second) + (double(per_token[i].second) - double(fixed[i].second)) * scale;
  return total;
}

GPT2::GPT2(const ModelConfig& cfg, Ops& ops, int B, int T)
    : cfg_(cfg), layout_(make_layout(cfg)), ops_(ops), B_(B), T_(T) {
  MC_CHECK(B > 0 && T > 0 && T <= cfg.max_seq_len, "B=%d T=%d maxT=%d", B, T, cfg.max_seq_len);
  MC_CHECK(cfg.channels % cfg.num_heads == 0, "C=%d NH=%d", cfg.channels, cfg.num_heads);
  for (const auto& [member, bytes] : buffer_plan(cfg, layout_.total, B, T, ops.act_dtype()))
    this->*member = Buffer(ops, bytes);
}

void GPT2::set_params(const std::vector<float>& host) {
  MC_CHECK(host.size() == layout_.total, "%zu != %zu", host.size(), layout_.total);
  if (ops_.act_dtype() == DType::F32) {
    ops_.upload(params_.get(), host.data(), host.size() * sizeof(float));
  } else {
    std::vector<uint16_t> h(host.size());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < host.size(); ++i) h[i] = f32_to_bf16(host[i]);
    ops_.upload(params_.get(), h.data(), h.size() * sizeof(uint16_t));
  }
}

std::vector<float> GPT2::get_params() const {
  std::vector<float> out(layout_.total);
  if (ops_.act_dtype() == DType::F32) {
    ops_.download(out.data(), params_.get(), out.size() * sizeof(float));
  } else {
    std::vector<uint16_t> h(out.size());
    ops_.download(h.data(), params_.get(), h.size() * sizeof(uint16_t));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(h[i]);
  }
  return out;
}

void GPT2::zero_grads() { ops_.zero(grads_.get(), layout_.total * sizeof(float)); }

// Transformer block l over N rows of input x: its activations go to slab s of each activation buffer
// (forward(): s = l, kept for backward; forward_cached(): s = 0, scratch), attend(atty, qkv) computes
// the attention output from the qkv rows. x may be slab s of residual3 itself: it is last read before
// residual3 is written.
void GPT2::block_forward(int l, Ptr x, int N, int s, const std::function<void(Ptr, Ptr)>& attend) {
  const DType at = ops_.act_dtype();
  const int C = cfg_.channels;
  const size_t S = size_t(B_) * T_;
  Ptr P = params();
  auto W = [&](const std::string& n) { return P.at(layout_.find(n).offset); };
  auto A = [&](const Buffer& buf, size_t width) { return buf.ptr(at).at(size_t(s) * S * width); };
  auto F = [&](const Buffer& buf) { return buf.f32() + size_t(s) * S; };
  const std::string p = "h." + std::to_string(l) + ".";
  ops_.layernorm_forward(A(ln1_, C), F(ln1_mean_), F(ln1_rstd_), x, W(p + "ln1w"), W(p + "ln1b"), N, C);
  ops_.matmul_forward(A(qkv_, 3 * C), A(ln1_, C), W(p + "qkvw"), W(p + "qkvb"), N, C, 3 * C);
  attend(A(atty_, C), A(qkv_, 3 * C));
  ops_.matmul_forward(A(attproj_, C), A(atty_, C), W(p + "attprojw"), W(p + "attprojb"), N, C, C);
  ops_.residual_forward(A(residual2_, C), x, A(attproj_, C), size_t(N) * C);
  ops_.layernorm_forward(A(ln2_, C), F(ln2_mean_), F(ln2_rstd_), A(residual2_, C), W(p + "ln2w"), W(p + "ln2b"), N, C);
  ops_.matmul_forward(A(fch_, 4 * C), A(ln2_, C), W(p + "fcw"), W(p + "fcb"), N, C, 4 * C);
  ops_.gelu_forward(A(fch_gelu_, 4 * C), A(fch_, 4 * C), size_t(N) * 4 * C);
  ops_.matmul_forward(A(fcproj_, C), A(fch_gelu_, 4 * C), W(p + "fcprojw"), W(p + "fcprojb"), N, 4 * C, C);
  ops_.residual_forward(A(residual3_, C), A(residual2_, C), A(fcproj_, C), size_t(N) * C);
}

double GPT2::forward(const int* inputs, const int* targets, int b, int t, float grad_scale) {
  MC_CHECK(b > 0 && b <= B_ && t > 0 && t <= T_, "b=%d t=%d (max %d x %d)", b, t, B_, T_);
  cur_b_ = b;
  cur_t_ = t;
  have_dlogits_ = false;
  const DType at = ops_.act_dtype();
  const int C = cfg_.channels, NH = cfg_.num_heads, L = cfg_.num_layers;
  const int V = cfg_.vocab_size, Vp = cfg_.padded_vocab_size;
  const int N = b * t;
  const size_t S = size_t(B_) * T_;  // per-layer slab stride in rows
  ops_.upload(inputs_.get(), inputs, size_t(N) * sizeof(int));
  Ptr P = params();
  auto W = [&](const std::string& n) { return P.at(layout_.find(n).offset); };
  auto A = [&](const Buffer& buf, int l, size_t width) { return buf.ptr(at).at(size_t(l) * S * width); };

  ops_.encoder_forward(encoded_.ptr(at), inputs_.i32(), W("wte"), W("wpe"), b, t, C);
  for (int l = 0; l < L; ++l) {
    block_forward(l, l == 0 ? encoded_.ptr(at) : A(residual3_, l - 1, C), N, l, [&](Ptr atty, Ptr qkv) {
      ops_.attention_forward(atty, att_lse_.f32() + size_t(l) * S * NH, qkv, b, t, C, NH);
    });
  }
  ops_.layernorm_forward(lnf_.ptr(at), lnf_mean_.f32(), lnf_rstd_.f32(), A(residual3_, L - 1, C), W("lnf.w"),
                         W("lnf.b"), N, C);
  ops_.matmul_forward(logits_.ptr(at), lnf_.ptr(at), W("wte"), Ptr(), N, C, Vp);
  if (!targets) return 0.0;
  ops_.upload(targets_.get(), targets, size_t(N) * sizeof(int));
  // With grad_scale > 0 the logits become dlogits of grad_scale * (mean loss) in place (fused).
  const bool bwd = grad_scale > 0.0f;
  ops_.crossentropy(losses_.f32(), logits_.ptr(at), targets_.i32(), N, V, Vp, bwd ? grad_scale / float(N) : 0.0f,
                    bwd);
  have_dlogits_ = bwd;
  return ops_.sum(losses_.f32(), size_t(N)) / double(N);
}

void GPT2::backward(const std::function<void(size_t)>& on_ready) {
  MC_CHECK(have_dlogits_, "backward() needs a preceding forward() with targets and grad_scale > 0");
  have_dlogits_ = false;
  const DType at = ops_.act_dtype();
  const int C = cfg_.channels, NH = cfg_.num_heads, L = cfg_.num_layers, Vp = cfg_.padded_vocab_size;
  const int b = cur_b_, t = cur_t_, N = b * t;
  const size_t S = size_t(B_) * T_;
  Ptr P = params();
  float* G = grads();
  auto W = [&](const std::string& n) { return P.at(layout_.find(n).offset); };
  auto dW = [&](const std::string& n) { return G + layout_.find(n).offset; };
  auto A = [&](const Buffer& buf, int l, size_t width) { return buf.ptr(at).at(size_t(l) * S * width); };
  auto F = [&](const Buffer& buf, int l) { return buf.f32() + size_t(l) * S; };
  auto ready = [&](size_t off) {
    if (on_ready) on_ready(off);
  };
  Ptr dres = dres_.ptr(at), dc = dbuf_c_.ptr(at), d3c = dbuf_3c_.ptr(at), d4c = dbuf_4c_.ptr(at),
      d4c2 = dbuf_4c2_.ptr(at);

  // classifier (tied to wte) and the final LayerNorm
  ops_.matmul_backward(dlnf_.ptr(at), dW("wte"), nullptr, logits_.ptr(at), lnf_.ptr(at), W("wte"), N, C, Vp);
  ops_.zero(dres_.get(), size_t(N) * C * dtype_size(at));
  ops_.layernorm_backward(dres, dW("lnf.w"), dW("lnf.b"), dlnf_.ptr(at), A(residual3_, L - 1, C), W("lnf.w"),
                          lnf_mean_.f32(), lnf_rstd_.f32(), N, C);
  ready(layout_.find("lnf.w").offset);
  for (int l = L - 1; l >= 0; --l) {
    const std::string p = "h." + std::to_string(l) + ".";
    Ptr x = l == 0 ? encoded_.ptr(at) : A(residual3_, l - 1, C);
    // dres holds d(residual3[l]); the MLP branch
    ops_.matmul_backward(d4c, dW(p + "fcprojw"), dW(p + "fcprojb"), dres, A(fch_gelu_, l, 4 * C), W(p + "fcprojw"),
                         N, 4 * C, C);
    ops_.gelu_backward(d4c2, A(fch_, l, 4 * C), d4c, size_t(N) * 4 * C);
    ops_.matmul_backward(dc, dW(p + "fcw"), dW(p + "fcb"), d4c2, A(ln2_, l, C), W(p + "fcw"), N, C, 4 * C);
    ops_.layernorm_backward(dres, dW(p + "ln2w"), dW(p + "ln2b"), dc, A(residual2_, l, C), W(p + "ln2w"),
                            F(ln2_mean_, l), F(ln2_rstd_, l), N, C);
    // dres now holds d(residual2[l]); the attention branch
    ops_.matmul_backward(dc, dW(p + "attprojw"), dW(p + "attprojb"), dres, A(atty_, l, C), W(p + "attprojw"), N,
                         C, C);
    ops_.attention_backward(d3c, dc, A(qkv_, l, 3 * C), A(atty_, l, C), att_lse_.f32() + size_t(l) * S * NH, b, t,
                            C, NH);
    ops_.matmul_backward(dc, dW(p + "qkvw"), dW(p + "qkvb"), d3c, A(ln1_, l, C), W(p + "qkvw"), N, C, 3 * C);
    ops_.layernorm_backward(dres, dW(p + "ln1w"), dW(p + "ln1b"), dc, x, W(p + "ln1w"), F(ln1_mean_, l),
                            F(ln1_rstd_, l), N, C);
    // dres now holds d(input of layer l); every gradient of layer l is final.
    ready(layout_.find(p + "ln1w").offset);
  }
  ops_.encoder_backward(dW("wte"), dW("wpe"), dres, inputs_.i32(), b, t, C);
  ready(0);
}

std::vector<float> GPT2::logits_at(int b, int pos) const {
  MC_CHECK(b < cur_b_ && pos < cur_t_, "b=%d pos=%d", b, pos);
  return logits_row(size_t(b) * cur_t_ + pos);
}

std::vector<float> GPT2::logits_row(size_t row) const {
  const DType at = ops_.act_dtype();
  const int V = cfg_.vocab_size, Vp = cfg_.padded_vocab_size;
  std::vector<float> out(V);
  if (at == DType::F32) {
    ops_.download(out.data(), logits_.f32() + row * Vp, size_t(V) * sizeof(float));
  } else {
    std::vector<uint16_t> h(V);
    ops_.download(h.data(), static_cast<const uint16_t*>(logits_.get()) + row * Vp, size_t(V) * 2);
    for (int i = 0; i < V; ++i) out[i] = bf16_to_f32(h[i]);
  }
  return out;
}

// Note [KV cache]
// Sampling appends one token at a time, and in a causal model the keys and values of earlier
// positions never change: forward_cached() keeps them per layer (L x max_seq x 2C, act dtype) and
// computes only the new positions' rows, whose attention reads the cached keys and values
// (Ops::attention_decode). Every other op is row-wise, so the new rows need nothing else of the
// earlier positions; and only the last row's logits are computed (with GPT-2's vocabulary the
// classifier, 50304 x C, is the largest matmul). The rows' activations reuse the layer-0 slabs of
// forward()'s buffers as scratch (no backward follows), so the only new memory is the cache itself,
// allocated on first use so that memory_bytes() (the trainer's plan) is unchanged.
// Numerics: the same ops run on the same values (attention_decode shares attention_forward's row
// code), except that the matmuls see t rows instead of the whole context, and BLAS sums in another
// order for another row count (the cpu ops use sgemv for one row): the logits agree with forward()'s
// to ~1e-6 relative, not bit for bit (Note [Cached tokens] in generate.cpp says what this means for
// the sampled tokens). On cuda every activation (and the cache) is bf16 and the decode kernel is not
// the flash kernel (Note [Decode attention] in kernels/attention.cu), so there the two agree to bf16
// tolerance (rel ~1e-2; tests/gpu/test_cuda_model.cpp). Learned positions cannot shift, so a full
// cache (max_seq positions) cannot slide: the caller resets it and re-runs the last window.
std::vector<float> GPT2::forward_cached(const int* tokens, int t) {
  MC_CHECK(ops_.supports_kv_cache(), "the %s ops have no KV cache (attention_decode)", ops_.name().c_str());
  MC_CHECK(t > 0 && int64_t(kv_len_) + t <= T_, "t=%d with %d cached (max %d)", t, kv_len_, T_);
  for (int i = 0; i < t; ++i)
    MC_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token %d outside [0, %d)", tokens[i], cfg_.vocab_size);
  const DType at = ops_.act_dtype();
  const int C = cfg_.channels, NH = cfg_.num_heads, L = cfg_.num_layers, Vp = cfg_.padded_vocab_size;
  const size_t slab = size_t(T_) * C;  // one layer of the cache, in elements
  if (!kcache_.get()) {
    kcache_ = Buffer(ops_, size_t(L) * slab * dtype_size(at));
    vcache_ = Buffer(ops_, size_t(L) * slab * dtype_size(at));
  }
  cur_b_ = cur_t_ = 0;  // forward()'s activations are gone: logits_at() and backward() now refuse
  have_dlogits_ = false;
  const int T0 = kv_len_;
  ops_.upload(inputs_.get(), tokens, size_t(t) * sizeof(int));
  Ptr P = params();
  auto W = [&](const std::string& n) { return P.at(layout_.find(n).offset); };
  auto A = [&](const Buffer& buf) { return buf.ptr(at); };  // layer-0 slab, reused by every layer

  ops_.encoder_forward(A(encoded_), inputs_.i32(), W("wte"), W("wpe").at(size_t(T0) * C), 1, t, C);
  for (int l = 0; l < L; ++l) {
    block_forward(l, l == 0 ? A(encoded_) : A(residual3_), t, 0, [&](Ptr atty, Ptr qkv) {
      ops_.attention_decode(atty, kcache_.ptr(at).at(l * slab), vcache_.ptr(at).at(l * slab), qkv, T0, t, T_, C, NH);
    });
  }
  ops_.layernorm_forward(A(lnf_), lnf_mean_.f32(), lnf_rstd_.f32(), A(residual3_).at(size_t(t - 1) * C), W("lnf.w"),
                         W("lnf.b"), 1, C);
  ops_.matmul_forward(A(logits_), A(lnf_), W("wte"), Ptr(), 1, C, Vp);
  kv_len_ += t;
  return logits_row(0);
}

}  // namespace mc
