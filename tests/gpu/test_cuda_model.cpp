// A whole GPT-2 forward + backward on the CPU (fp32) and CUDA (bf16) backends from the same fp32
// initialisation: loss, gradient norm and the gradient vector agree within bf16 tolerance. Sampling
// with the KV cache on CUDA: forward_cached()'s logits against a full CUDA forward (and the CPU's) at
// every position, and generate() through the cache following the full forward's choices.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/rng.h"
#include "gpu_test_util.h"
#include "model/generate.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "../test_util.h"

namespace mc {
namespace {

using test::rel_l2;

struct Result {
  double loss = 0, grad_norm = 0;
  std::vector<float> grads;
};

Result run(Ops& ops, const ModelConfig& cfg, const std::vector<float>& init, const std::vector<int>& in,
           const std::vector<int>& tg, int B, int T, int b, int t) {
  GPT2 model(cfg, ops, B, T);
  model.set_params(init);
  model.zero_grads();
  Result r;
  r.loss = model.forward(in.data(), tg.data(), b, t, 1.0f);
  model.backward();
  r.grad_norm = std::sqrt(ops.sum_squares(model.grads(), model.num_params()));
  r.grads.resize(model.num_params());
  ops.download(r.grads.data(), model.grads(), r.grads.size() * sizeof(float));
  return r;
}

ModelConfig config(int L, int NH, int C, int V, int T) { return test::model_config(T, V, L, NH, C); }

void compare(int L, int NH, int C, int V, int B, int T, int b, int t) {
  NEED_GPU();
  const ModelConfig cfg = config(L, NH, C, V, T);
  const std::vector<float> init = gpt2_init(cfg, make_layout(cfg), 1234);
  Rng rng(99);
  std::vector<int> in(size_t(b) * t), tg(size_t(b) * t);
  for (auto& x : in) x = int(rng.next() % uint64_t(V));
  for (auto& x : tg) x = int(rng.next() % uint64_t(V));
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  const Result a = run(*cpu, cfg, init, in, tg, B, T, b, t);
  const Result g = run(*gpu, cfg, init, in, tg, B, T, b, t);
  // Loss: bf16 activations through L layers, rel 1e-2. Gradient norm: rel 5e-2.
  EXPECT_NEAR(g.loss, a.loss, 1e-2 * a.loss) << "loss cpu " << a.loss << " cuda " << g.loss;
  EXPECT_NEAR(g.grad_norm, a.grad_norm, 5e-2 * a.grad_norm) << "grad norm cpu " << a.grad_norm << " cuda " << g.grad_norm;
  // The whole gradient vector: relative L2 error below 1e-1 (bf16 activation gradients).
  ASSERT_EQ(g.grads.size(), a.grads.size());
  EXPECT_LE(rel_l2(a.grads, g.grads), 1e-1) << "relative L2 error of the gradients";
}

// hs 32, full batch and sequence.
TEST(CudaModel, TinyMatchesCpu) { compare(2, 2, 64, 256, 2, 64, 2, 64); }
// hs 64, a smaller batch and a ragged sequence length than allocated.
TEST(CudaModel, PartialBatchMatchesCpu) { compare(2, 2, 128, 300, 3, 96, 2, 70); }
// d12 width (C 768, 12 heads of 64) with 2 layers, the GPT-2 vocabulary (50257, padded 50304) and the
// full context T = 1024, B = 2: every op at its real d12 shape except the depth. Same tolerances as
// above: they bound bf16 rounding (rel 2^-9 per stored activation) compounded over the ops of a few
// layers, which does not grow with width or length; the logits (std ~0.55 at init) and their
// softmax over 50257 classes stay well inside bf16's range. CPU cost: 6 x 2048 tokens x 52.8M
// parameters = 650 GFLOP of GEMMs + ~25 GFLOP of attention + 54M-parameter init, ~2-3 s on 16 cores.
TEST(CudaModel, D12WidthLarge) { compare(2, 12, 768, 50257, 2, 1024, 2, 1024); }

// Note [Invalid targets] (kernels/bad_target.h): a target outside [0, V) makes GPT2::forward throw the
// same RuntimeError on both backends (the CPU in crossentropy, the GPU at the loss read-back right
// after) instead of returning a NaN loss; the model trains on normally afterwards.
TEST(CudaModel, OutOfRangeTargetFailsLikeCpu) {
  NEED_GPU();
  const int B = 2, T = 32, V = 256;
  const ModelConfig cfg = config(2, 2, 64, V, T);
  const std::vector<float> init = gpt2_init(cfg, make_layout(cfg), 7);
  Rng rng(5);
  std::vector<int> in(size_t(B) * T), tg(size_t(B) * T);
  for (auto& x : in) x = int(rng.next() % uint64_t(V));
  for (auto& x : tg) x = int(rng.next() % uint64_t(V));
  std::vector<int> bad = tg;
  bad[37] = V;  // row 37 = batch 1, position 5
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  for (Ops* o : {cpu.get(), gpu.get()}) {
    GPT2 model(cfg, *o, B, T);
    model.set_params(init);
    for (float grad_scale : {0.0f, 1.0f}) {
      try {
        const double loss = model.forward(in.data(), bad.data(), B, T, grad_scale);
        ADD_FAILURE() << o->name() << ": no error for target " << V << ", loss " << loss;
      } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("target 256 at row 37 outside [0, 256)"), std::string::npos)
            << o->name() << ": " << e.what();
      }
      const double loss = model.forward(in.data(), tg.data(), B, T, grad_scale);
      EXPECT_TRUE(std::isfinite(loss)) << o->name();
      if (grad_scale > 0) EXPECT_NO_THROW(model.backward()) << o->name();
    }
  }
}

// ---- the KV cache on CUDA -----------------------------------------------------------------------

// GPT-2 init with the weights scaled up (as tests/unit/test_generate.cpp does), so that attention
// shapes the logits visibly: at the 0.02 init every position's logits are nearly the same and a broken
// cache could hide inside bf16 tolerance. KvCacheContextMatters checks that it does not.
std::vector<float> kv_init(const ModelConfig& cfg, uint64_t seed) {
  const ParamLayout lay = make_layout(cfg);
  std::vector<float> w = gpt2_init(cfg, lay, seed);
  for (auto& x : w) x *= 4.0f;
  for (const auto& t : lay.tensors)
    if (!t.decay)  // biases and LayerNorm: not all zero / one
      for (size_t i = 0; i < t.numel; ++i) w[t.offset + i] += 0.1f * std::sin(float(i) * 0.7f + float(seed));
  return w;
}

std::vector<int> kv_tokens(size_t n, int V, uint64_t seed) {
  Rng r(seed);
  std::vector<int> v(n);
  for (auto& t : v) t = int(r.next() % uint64_t(V));
  return v;
}

// Logits of every position of one full forward over tok (causal: position p's row depends on
// tok[0..p] only, so one forward gives the reference for every prefix).
std::vector<std::vector<float>> all_logits(GPT2& m, const std::vector<int>& tok) {
  const int T = int(tok.size());
  m.forward(tok.data(), nullptr, 1, T);
  std::vector<std::vector<float>> r;
  for (int p = 0; p < T; ++p) r.push_back(m.logits_at(0, p));
  return r;
}

// Tolerance of the cached logits (rel L2 per position): the cached and the full path store every
// activation in bf16 (rel 2^-9) but not always the same bf16 values (the full forward's flash attention
// rounds P to bf16, the decode kernel does not; the GEMMs see t rows instead of T), so they differ by a
// few bf16 roundings compounded over the layers, like the CPU-vs-CUDA forward above (loss rel 1e-2).
constexpr double kCachedTol = 3e-2;

// Prefill `first` tokens, then chunks of `step` (1: sampling) up to a full cache; every returned row
// against the full CUDA forward and the CPU's fp32 forward.
void kv_cache_case(const ModelConfig& cfg, const std::vector<int>& firsts, int step, uint64_t seed) {
  NEED_GPU();
  const int T = cfg.max_seq_len;
  const std::vector<float> init = kv_init(cfg, seed);
  const std::vector<int> tok = kv_tokens(size_t(T), cfg.vocab_size, seed + 1);
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  GPT2 cref(cfg, *cpu, 1, T), gref(cfg, *gpu, 1, T), g(cfg, *gpu, 1, T);
  cref.set_params(init);
  gref.set_params(init);
  g.set_params(init);
  ASSERT_TRUE(g.kv_cache_supported());
  const auto want_cpu = all_logits(cref, tok), want_gpu = all_logits(gref, tok);
  double worst = 0, worst_cpu = 0;
  for (int first : firsts) {
    g.kv_reset();
    int pos = 0;
    while (pos < T) {
      const int t = pos == 0 ? first : std::min(step, T - pos);
      const std::vector<float> got = g.forward_cached(tok.data() + pos, t);
      pos += t;
      ASSERT_EQ(g.kv_len(), pos);
      ASSERT_EQ(got.size(), size_t(cfg.vocab_size));
      const double e = rel_l2(want_gpu[size_t(pos - 1)], got), ec = rel_l2(want_cpu[size_t(pos - 1)], got);
      worst = std::max(worst, e);
      worst_cpu = std::max(worst_cpu, ec);
      ASSERT_LE(e, kCachedTol) << "cached vs full cuda forward, pos " << pos - 1 << " first " << first;
      ASSERT_LE(ec, kCachedTol) << "cached cuda vs cpu forward, pos " << pos - 1 << " first " << first;
    }
    // Full: one more position is refused (nothing queued), and the model still works.
    EXPECT_THROW(g.forward_cached(tok.data(), 1), RuntimeError);
    EXPECT_THROW(g.logits_at(0, 0), RuntimeError);  // forward_cached() consumed forward()'s activations
  }
  g.kv_reset();
  EXPECT_LE(rel_l2(want_gpu[0], g.forward_cached(tok.data(), 1)), kCachedTol);
  std::printf("cached logits, worst rel L2: %.2e vs cuda forward, %.2e vs cpu forward\n", worst, worst_cpu);
}

// hs 32 (the flash kernel's smallest), a prompt of 1, 5 and the whole context, then single tokens.
TEST(CudaKvCache, LogitsMatchFullForwardHs32) {
  kv_cache_case(config(2, 2, 64, 256, 48), {1, 5, 48}, 1, 11);
}
// hs 64, three layers, chunks of 3 after the prompt, a vocabulary that is not a multiple of 128.
TEST(CudaKvCache, LogitsMatchFullForwardHs64Chunks) {
  kv_cache_case(config(3, 3, 192, 300, 40), {2, 17}, 3, 12);
}
// hs 128.
TEST(CudaKvCache, LogitsMatchFullForwardHs128) { kv_cache_case(config(1, 2, 256, 129, 20), {4}, 1, 13); }

// The guard against a vacuous pass: with kv_init's weights the history changes the logits by far more
// than kCachedTol (the same last token after another history), so a cache that lost or misplaced
// earlier positions could not pass the tests above. Computed on the CPU (fp32) and on the GPU.
TEST(CudaKvCache, ContextMatters) {
  NEED_GPU();
  const ModelConfig cfg = config(2, 2, 64, 256, 48);
  const int T = cfg.max_seq_len;
  const std::vector<float> init = kv_init(cfg, 11);
  const std::vector<int> a = kv_tokens(size_t(T), cfg.vocab_size, 12);
  std::vector<int> b = kv_tokens(size_t(T), cfg.vocab_size, 99);
  auto gpu = make_ops("cuda", 0);
  auto cpu = make_cpu_ops();
  for (Ops* o : {cpu.get(), gpu.get()}) {
    GPT2 m(cfg, *o, 1, T);
    m.set_params(init);
    double least = 1e9;
    for (int p = 1; p < T; p += 7) {  // same token at p, different tokens before it
      std::vector<int> a2(a.begin(), a.begin() + p + 1), b2(b.begin(), b.begin() + p + 1);
      b2[size_t(p)] = a2[size_t(p)];
      m.forward(a2.data(), nullptr, 1, p + 1);
      const std::vector<float> la = m.logits_at(0, p);
      m.forward(b2.data(), nullptr, 1, p + 1);
      least = std::min(least, rel_l2(la, m.logits_at(0, p)));
    }
    std::printf("%s: smallest rel L2 change of the logits under another history: %.3f\n", o->name().c_str(), least);
    EXPECT_GE(least, 10 * kCachedTol) << o->name();
  }
}

// generate() through the cache (greedy) against the full forward: each token the cached path picks
// must be the full CUDA forward's argmax for that context, up to a near-tie within bf16 tolerance.
// The uncached path's tokens (the full forward's exact argmaxes) are only reported, not checked: they
// agree until the first near-tie, after which the texts may legitimately differ. 45 tokens after a
// 5-token prompt with a context of 32 slide the window (the cache is rebuilt from the last 32 tokens
// each time).
TEST(CudaKvCache, GreedyGenerateFollowsFullForward) {
  NEED_GPU();
  const ModelConfig cfg = config(2, 2, 64, 256, 32);
  const int ctx = cfg.max_seq_len;
  const std::vector<float> init = kv_init(cfg, 21);
  auto gpu = make_ops("cuda", 0);
  GPT2 g(cfg, *gpu, 1, ctx), ref(cfg, *gpu, 1, ctx);
  g.set_params(init);
  ref.set_params(init);
  const std::vector<int> prompt = kv_tokens(5, cfg.vocab_size, 22);
  SampleOptions opt;
  opt.tokens = 45;
  opt.temperature = 0;
  opt.kv_cache = false;
  const std::vector<int> plain = generate(ref, prompt, opt);
  opt.kv_cache = true;
  const std::vector<int> cached = generate(g, prompt, opt);
  ASSERT_GT(g.kv_len(), 0) << "the cached path did not run";
  ASSERT_EQ(cached.size(), size_t(opt.tokens));
  EXPECT_GT(std::set<int>(cached.begin(), cached.end()).size(), 3u) << "degenerate text proves little";
  std::vector<int> seq = prompt;
  int same_prefix = -1;
  for (size_t k = 0; k < cached.size(); ++k) {
    const int len = std::min<int>(int(seq.size()), ctx);
    ref.forward(seq.data() + seq.size() - size_t(len), nullptr, 1, len);
    const std::vector<float> l = ref.logits_at(0, len - 1);
    const int best = int(std::max_element(l.begin(), l.end()) - l.begin());
    float mx = 0;
    for (float x : l) mx = std::max(mx, std::fabs(x));
    const float tol = float(kCachedTol) * mx;
    ASSERT_GE(l[size_t(cached[k])], l[size_t(best)] - tol)
        << "step " << k << ": cached chose " << cached[k] << " (logit " << l[size_t(cached[k])] << "), full forward's "
        << "argmax is " << best << " (" << l[size_t(best)] << ")";
    if (same_prefix < 0 && cached[k] != plain[k]) same_prefix = int(k);
    seq.push_back(cached[k]);
  }
  std::printf("greedy: cached and uncached agree on the first %d of %d tokens\n",
              same_prefix < 0 ? opt.tokens : same_prefix, opt.tokens);
}

}  // namespace
}  // namespace mc
