// Sampling with and without the KV cache: the cpu attention_decode against attention_forward's rows
// and a double-precision reference, cached logits against forward()'s at every position (several odd
// model shapes, prefill in chunks), generate() giving the same tokens both ways (seeds, temperatures,
// top-k, greedy, prompt lengths, the sliding window), choose_token's greedy/top-k behaviour, and the
// one-row matmul the cached path uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <vector>

#include "core/errors.h"
#include "core/rng.h"
#include "model/generate.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "../test_util.h"

namespace mc {
namespace {

void fill_uniform(float* p, size_t n, uint64_t seed, float scale = 1.0f) {
  Rng r(seed);
  for (size_t i = 0; i < n; ++i) p[i] = scale * (2.0f * r.uniform() - 1.0f);
}

// Causal attention of query row i (one sequence) in double precision, straight from the definition.
std::vector<double> attention_reference(const float* qkv, int T, int C, int NH, int i) {
  const int hs = C / NH;
  std::vector<double> out(size_t(C), 0.0);
  for (int h = 0; h < NH; ++h) {
    std::vector<double> s(size_t(i) + 1);
    double mx = -1e300;
    for (int j = 0; j <= i; ++j) {
      double d = 0;
      for (int k = 0; k < hs; ++k) d += double(qkv[i * 3 * C + h * hs + k]) * qkv[j * 3 * C + C + h * hs + k];
      s[size_t(j)] = d / std::sqrt(double(hs));
      mx = std::max(mx, s[size_t(j)]);
    }
    double z = 0;
    for (double& v : s) z += (v = std::exp(v - mx));
    for (int j = 0; j <= i; ++j)
      for (int k = 0; k < hs; ++k) out[size_t(h * hs + k)] += s[size_t(j)] / z * qkv[j * 3 * C + 2 * C + h * hs + k];
  }
  (void)T;
  return out;
}

struct AttnShape {
  int T, C, NH;
};

// Decode in chunks (the sizes cycle through `chunks`) must give attention_forward's rows and leave
// the keys and values of every position in the cache.
TEST(AttentionDecode, MatchesForwardRowsAndReference) {
  auto ops = make_cpu_ops();
  ASSERT_TRUE(ops->supports_kv_cache());
  const AttnShape shapes[] = {{1, 4, 1}, {7, 6, 3}, {19, 20, 4}, {33, 36, 3}, {64, 64, 4}};
  const std::vector<std::vector<int>> chunkings = {{1}, {5, 1}, {2, 3}, {100}};
  uint64_t seed = 1;
  for (const auto& sh : shapes) {
    const int T = sh.T, C = sh.C, NH = sh.NH;
    Buffer qkv(*ops, size_t(T) * 3 * C * 4), ref(*ops, size_t(T) * C * 4), lse(*ops, size_t(NH) * T * 4);
    fill_uniform(qkv.f32(), size_t(T) * 3 * C, seed++, 2.0f);
    ops->attention_forward(ref.ptr(DType::F32), lse.f32(), qkv.ptr(DType::F32), 1, T, C, NH);
    for (const auto& chunks : chunkings) {
      const int maxT = T + 2;  // a cache larger than the sequence: rows past T0 + t are never read
      Buffer kc(*ops, size_t(maxT) * C * 4), vc(*ops, size_t(maxT) * C * 4), out(*ops, size_t(T) * C * 4);
      fill_uniform(kc.f32(), size_t(maxT) * C, 99, 50.0f);  // garbage the op must not read
      fill_uniform(vc.f32(), size_t(maxT) * C, 98, 50.0f);
      int T0 = 0;
      for (size_t k = 0; T0 < T; ++k) {
        const int t = std::min(chunks[k % chunks.size()], T - T0);
        ops->attention_decode(out.ptr(DType::F32).at(size_t(T0) * C), kc.ptr(DType::F32), vc.ptr(DType::F32),
                              qkv.ptr(DType::F32).at(size_t(T0) * 3 * C), T0, t, maxT, C, NH);
        T0 += t;
      }
      for (int i = 0; i < T; ++i) {
        const std::vector<double> r = attention_reference(qkv.f32(), T, C, NH, i);
        for (int c = 0; c < C; ++c) {
          const float got = out.f32()[i * C + c], want = ref.f32()[i * C + c];
          // The same per-row code as attention_forward (attend_row): equal up to vectorisation.
          ASSERT_NEAR(got, want, 1e-6f * (1.0f + std::fabs(want))) << "T=" << T << " i=" << i << " c=" << c;
          ASSERT_NEAR(got, r[size_t(c)], 1e-5 * (1.0 + std::fabs(r[size_t(c)]))) << "reference, i=" << i;
          ASSERT_EQ(kc.f32()[i * C + c], qkv.f32()[i * 3 * C + C + c]) << "cached key";
          ASSERT_EQ(vc.f32()[i * C + c], qkv.f32()[i * 3 * C + 2 * C + c]) << "cached value";
        }
      }
    }
  }
}

TEST(AttentionDecode, RefusesAFullCache) {
  auto ops = make_cpu_ops();
  const int C = 8, NH = 2, maxT = 4;
  Buffer qkv(*ops, 3 * 3 * C * 4), kc(*ops, maxT * C * 4), vc(*ops, maxT * C * 4), out(*ops, 3 * C * 4);
  EXPECT_THROW(ops->attention_decode(out.ptr(DType::F32), kc.ptr(DType::F32), vc.ptr(DType::F32),
                                     qkv.ptr(DType::F32), 2, 3, maxT, C, NH),
               RuntimeError);
  EXPECT_THROW(ops->attention_decode(out.ptr(DType::F32), kc.ptr(DType::F32), vc.ptr(DType::F32),
                                     qkv.ptr(DType::F32), 0, 0, maxT, C, NH),
               RuntimeError);
}

// matmul_forward with one row (the cached path's case, sgemv) against the same row of a many-row
// GEMM and a double-precision reference, with and without a bias.
TEST(CpuMatmul, OneRowMatchesManyRows) {
  auto ops = make_cpu_ops();
  const int N = 5, C = 37, OC = 29;
  Buffer inp(*ops, N * C * 4), w(*ops, OC * C * 4), bias(*ops, OC * 4), one(*ops, OC * 4), many(*ops, N * OC * 4);
  fill_uniform(inp.f32(), N * C, 1);
  fill_uniform(w.f32(), OC * C, 2);
  fill_uniform(bias.f32(), OC, 3);
  for (bool with_bias : {true, false}) {
    const Ptr b = with_bias ? bias.ptr(DType::F32) : Ptr();
    ops->matmul_forward(many.ptr(DType::F32), inp.ptr(DType::F32), w.ptr(DType::F32), b, N, C, OC);
    for (int n = 0; n < N; ++n) {
      ops->matmul_forward(one.ptr(DType::F32), inp.ptr(DType::F32).at(size_t(n) * C), w.ptr(DType::F32), b, 1, C, OC);
      for (int o = 0; o < OC; ++o) {
        double ref = with_bias ? bias.f32()[o] : 0.0;
        for (int c = 0; c < C; ++c) ref += double(inp.f32()[n * C + c]) * w.f32()[o * C + c];
        EXPECT_NEAR(one.f32()[o], ref, 1e-5) << "n=" << n << " o=" << o << " bias=" << with_bias;
        EXPECT_NEAR(one.f32()[o], many.f32()[n * OC + o], 1e-5) << "n=" << n << " o=" << o;
      }
    }
  }
}

ModelConfig config(int maxT, int V, int L, int NH, int C) { return test::model_config(maxT, V, L, NH, C); }

// GPT-2 init with weights scaled up, so that attention and the MLP shape the logits visibly (at the
// 0.02 init every position's logits are nearly the same and a broken cache could hide).
void init_model(GPT2& m, uint64_t seed) {
  std::vector<float> w = gpt2_init(m.config(), m.layout(), seed);
  for (auto& x : w) x *= 4.0f;
  for (const auto& t : m.layout().tensors)
    if (!t.decay)  // biases and LayerNorm: not all zero / one
      for (size_t i = 0; i < t.numel; ++i) w[t.offset + i] += 0.1f * std::sin(float(i) * 0.7f + float(seed));
  m.set_params(w);
}

std::vector<int> random_tokens(size_t n, int V, uint64_t seed) {
  Rng r(seed);
  std::vector<int> v(n);
  for (auto& t : v) t = int(r.next() % uint64_t(V));
  return v;
}

// Relative agreement of two logit rows, scaled by the row's largest magnitude; *worst collects the
// largest relative difference seen.
void expect_logits_close(const std::vector<float>& got, const std::vector<float>& want, int pos, float* worst) {
  ASSERT_EQ(got.size(), want.size());
  float mx = 0;
  for (float x : want) mx = std::max(mx, std::fabs(x));
  ASSERT_GT(mx, 0.5f) << "logits too small to test anything";
  for (size_t v = 0; v < got.size(); ++v) {
    *worst = std::max(*worst, std::fabs(got[v] - want[v]) / mx);
    ASSERT_NEAR(got[v], want[v], 1e-5f * mx) << "cached vs forward, pos=" << pos << " v=" << v;
  }
}

TEST(KvCache, LogitsMatchFullForwardAtEveryPosition) {
  auto ops = make_cpu_ops();
  const ModelConfig cfgs[] = {config(8, 40, 2, 2, 16), config(13, 77, 3, 3, 24), config(5, 5, 1, 1, 8),
                              config(21, 130, 2, 5, 40)};
  uint64_t seed = 10;
  float worst = 0;
  for (const auto& cfg : cfgs) {
    const int T = cfg.max_seq_len;
    GPT2 m(cfg, *ops, 1, T);
    init_model(m, seed++);
    const std::vector<int> tok = random_tokens(size_t(T), cfg.vocab_size, seed++);
    m.forward(tok.data(), nullptr, 1, T);
    std::vector<std::vector<float>> want;
    for (int p = 0; p < T; ++p) want.push_back(m.logits_at(0, p));
    // Prefill of `first` tokens, then chunks of `step` (1 is the sampling case).
    for (int first : {1, 2, T / 2, T}) {
      for (int step : {1, 3}) {
        if (first < 1) continue;
        m.kv_reset();
        int pos = 0;
        while (pos < T) {
          const int t = pos == 0 ? first : std::min(step, T - pos);
          const std::vector<float> got = m.forward_cached(tok.data() + pos, t);
          pos += t;
          ASSERT_EQ(m.kv_len(), pos);
          expect_logits_close(got, want[size_t(pos - 1)], pos - 1, &worst);
        }
      }
    }
    // The cache is full now: one more position is refused, and a reset starts over bit for bit.
    EXPECT_THROW(m.forward_cached(tok.data(), 1), RuntimeError);
    EXPECT_THROW(m.logits_at(0, 0), RuntimeError);  // forward_cached() consumed forward()'s activations
    m.kv_reset();
    const std::vector<float> a = m.forward_cached(tok.data(), 1);
    m.kv_reset();
    EXPECT_EQ(m.forward_cached(tok.data(), 1), a);
  }
  std::printf("largest relative logit difference, cached vs forward: %.2e\n", double(worst));
}

TEST(KvCache, RefusesBadTokens) {
  auto ops = make_cpu_ops();
  GPT2 m(config(8, 40, 1, 2, 16), *ops, 1, 8);
  init_model(m, 3);
  const int bad[] = {40}, neg[] = {-1};
  EXPECT_THROW(m.forward_cached(bad, 1), RuntimeError);
  EXPECT_THROW(m.forward_cached(neg, 1), RuntimeError);
  EXPECT_EQ(m.kv_len(), 0);
}

// Both paths, many settings: the tokens must be the same (Note [Cached tokens] in generate.cpp).
TEST(Generate, CachedAndUncachedGiveTheSameTokens) {
  auto ops = make_cpu_ops();
  struct Case {
    float temperature;
    int top_k;
  };
  const Case cases[] = {{0.0f, 0}, {1.0f, 0}, {0.7f, 5}, {1.5f, 1}, {2.0f, 3}};
  const ModelConfig cfgs[] = {config(16, 50, 2, 2, 16), config(11, 97, 3, 3, 24)};
  uint64_t mseed = 40;
  int cached_runs = 0;
  for (const auto& cfg : cfgs) {
    const int ctx = cfg.max_seq_len;
    GPT2 m(cfg, *ops, 1, ctx);
    init_model(m, mseed++);
    // prompt lengths: one token, short, one below the window, the window, longer than the window
    for (int plen : {1, 3, ctx - 1, ctx, ctx + 4}) {
      const std::vector<int> prompt = random_tokens(size_t(plen), cfg.vocab_size, mseed * 100 + uint64_t(plen));
      for (const auto& cs : cases) {
        for (uint64_t seed : {1u, 2u}) {
          SampleOptions opt;
          opt.tokens = 2 * ctx + 3;  // slides the window many times
          opt.temperature = cs.temperature;
          opt.top_k = cs.top_k;
          opt.seed = seed;
          opt.kv_cache = false;
          const std::vector<int> plain = generate(m, prompt, opt);
          opt.kv_cache = true;
          std::vector<int> streamed;
          const std::vector<int> cached = generate(m, prompt, opt, [&](int t) { streamed.push_back(t); });
          cached_runs += m.kv_len() > 0;  // the cached path really ran
          ASSERT_EQ(cached, plain) << "plen=" << plen << " T=" << cs.temperature << " k=" << cs.top_k
                                   << " seed=" << seed;
          ASSERT_EQ(streamed, cached);
          ASSERT_EQ(int(cached.size()), opt.tokens);
          for (int t : cached) ASSERT_TRUE(t >= 0 && t < cfg.vocab_size);
        }
      }
    }
  }
  EXPECT_EQ(cached_runs, 2 * 5 * 5 * 2);
}

// The settings above must actually produce varied text (else "same tokens" would prove little).
TEST(Generate, SamplesDependOnSeedAndContext) {
  auto ops = make_cpu_ops();
  GPT2 m(config(16, 50, 2, 2, 16), *ops, 1, 16);
  init_model(m, 7);
  SampleOptions opt;
  opt.tokens = 30;
  const std::vector<int> a = generate(m, {1, 2, 3}, opt);
  opt.seed = 1338;
  const std::vector<int> b = generate(m, {1, 2, 3}, opt);
  EXPECT_NE(a, b);
  EXPECT_GT(std::set<int>(a.begin(), a.end()).size(), 5u);
  opt.temperature = 0;
  const std::vector<int> g1 = generate(m, {1, 2, 3}, opt), g2 = generate(m, {4, 5, 6}, opt);
  EXPECT_NE(g1, g2);
}

TEST(ChooseToken, GreedyAndTopK) {
  Rng rng(5);
  SampleOptions greedy;
  greedy.temperature = 0;
  EXPECT_EQ(choose_token({0.1f, 3.0f, -2.0f, 2.9f}, greedy, rng), 1);
  EXPECT_EQ(choose_token({5.0f, 1.0f, 5.0f}, greedy, rng), 0);  // ties: the first
  // top-1 is greedy at any temperature
  SampleOptions top1;
  top1.top_k = 1;
  top1.temperature = 3.0f;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(choose_token({0.1f, 3.0f, -2.0f, 2.9f, 2.95f}, top1, rng), 1);
  // top-2 draws only the two largest, with frequencies of softmax(l / T) over them
  SampleOptions top2;
  top2.top_k = 2;
  top2.temperature = 0.5f;
  const std::vector<float> l = {0.0f, std::log(3.0f) * 0.5f, -1.0f, -0.5f};  // top two: 1, then 0
  std::map<int, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[choose_token(l, top2, rng)];
  EXPECT_EQ(count.size(), 2u);
  EXPECT_EQ(count[2] + count[3], 0);
  // p(1) = 3 / (3 + 1) at temperature 0.5 (exp(2 * log(3) / 2) = 3)
  EXPECT_NEAR(double(count[1]) / n, 0.75, 0.02);
  EXPECT_EQ(count[0] + count[1], n);
  // k larger than the vocabulary is the whole vocabulary; same seed, same draws
  SampleOptions all;
  all.top_k = 100;
  Rng r1(9), r2(9);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(choose_token(l, all, r1), choose_token(l, all, r2));
}

TEST(ChooseToken, TinyAndHugeTemperatures) {
  // l / 1e-40 overflowed to inf (and inf - inf to NaN), which picked the least likely tokens.
  Rng rng(3);
  SampleOptions tiny;
  tiny.temperature = 1e-40f;
  const std::vector<float> l = {-30.0f, 4.0f, 3.999f, -1e30f, 2.0f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(choose_token(l, tiny, rng), 1);
  // A huge temperature flattens the distribution: every token is drawn, none is NaN.
  SampleOptions huge;
  huge.temperature = 1e30f;
  std::map<int, int> count;
  for (int i = 0; i < 5000; ++i) ++count[choose_token({1.0f, 2.0f, 3.0f}, huge, rng)];
  EXPECT_EQ(count.size(), 3u);
  for (auto& [tok, n] : count) EXPECT_NEAR(n / 5000.0, 1.0 / 3, 0.03) << tok;
}

}  // namespace
}  // namespace mc
