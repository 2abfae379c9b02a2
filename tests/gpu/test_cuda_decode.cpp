// The CUDA attention_decode (sampling's KV cache, Note [Decode attention] in kernels/attention.cu)
// against its fp32 CPU twin on the same random, bf16-representable inputs: the output rows and the
// whole cache after the call, for many shapes (t > 1, T0 = 0, a full cache, several key chunks, the d12
// and d48 head layouts at maxT = 1024, head sizes the flash kernels do not take). Skips without a GPU.
// Tolerances: the decode kernel keeps everything in fp32 and rounds only the stored output to bf16
// (rel 2^-9), so out is held to rel 1e-2 / abs 2e-3 element-wise and rel L2 5e-3; the cache is a
// copy and must be bit-identical. Cases named *Large* are left out of the memcheck run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "gpu_test_util.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

namespace mc {
namespace {

using namespace test;

// Garbage in cache rows the call may neither read nor write (rows >= T0 + t): large enough that a
// key read past the causal bound would dominate its row's softmax.
constexpr float kGarbage = 48.f;

struct DecodeCase {
  int NH, hs, T0, t, maxT;
};

std::string tag_of(const DecodeCase& c) {
  return " NH=" + std::to_string(c.NH) + " hs=" + std::to_string(c.hs) + " T0=" + std::to_string(c.T0) +
         " t=" + std::to_string(c.t) + " maxT=" + std::to_string(c.maxT);
}

// One attention_decode call on both backends. Cache rows < T0 hold earlier keys/values (random), rows
// >= T0 garbage; out starts as 7s ("=": every element must be written).
void decode_case(const DecodeCase& c, uint64_t seed) {
  const int C = c.NH * c.hs;
  const size_t cache_n = size_t(c.maxT) * C, out_n = size_t(c.t) * C;
  // std 2: scores q.k/sqrt(hs) of std 4, so each row's softmax is peaked and a wrong or missing key shows.
  const auto qkv = randn(size_t(c.t) * 3 * C, 2.f, seed);
  std::vector<float> k0 = randn(cache_n, 2.f, seed + 1), v0 = randn(cache_n, 2.f, seed + 2);
  for (size_t e = size_t(c.T0) * C; e < cache_n; ++e) k0[e] = v0[e] = kGarbage;
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr kc = d.act(k0), vc = d.act(v0), q = d.act(qkv);
    Ptr out = d.act(std::vector<float>(out_n, 7.f));
    o.attention_decode(out, kc, vc, q, c.T0, c.t, c.maxT, C, c.NH);
    return Outs{d.get(out, out_n), d.get(kc, cache_n), d.get(vc, cache_n)};
  });
  const std::string tag = tag_of(c);
  expect_close(cpu[0], gpu[0], 1e-2, 2e-3, "decode out" + tag, 5e-3);
  expect_equal(cpu[1], gpu[1], "decode kcache" + tag);
  expect_equal(cpu[2], gpu[2], "decode vcache" + tag);
  // Independently of the twin: rows < T0 and >= T0 + t untouched, rows T0.. hold the new keys/values.
  size_t bad = 0;
  for (int p = 0; p < c.maxT; ++p)
    for (int e = 0; e < C; ++e) {
      const size_t at = size_t(p) * C + size_t(e);
      const bool fresh = p >= c.T0 && p < c.T0 + c.t;
      const size_t src = size_t(p - c.T0) * 3 * C + size_t(e);
      const float wk = fresh ? qkv[src + size_t(C)] : k0[at], wv = fresh ? qkv[src + 2 * size_t(C)] : v0[at];
      bad += gpu[1][at] != wk || gpu[2][at] != wv;
    }
  EXPECT_EQ(bad, 0u) << "cache rows not as expected" << tag;
  for (float x : gpu[0]) ASSERT_TRUE(std::isfinite(x)) << tag;
}

TEST(CudaDecode, Supported) {
  NEED_GPU();
  EXPECT_TRUE(make_ops("cuda", 0)->supports_kv_cache());
}
// Prefill from an empty cache (T0 = 0, t > 1): row i sees rows 0..i; row 0 is exactly its own value.
TEST(CudaDecode, PrefillFromEmpty) { NEED_GPU(); decode_case({2, 32, 0, 9, 16}, 100); }
// The sampling step: one new row after five cached ones.
TEST(CudaDecode, OneRow) { NEED_GPU(); decode_case({3, 64, 5, 1, 16}, 110); }
// Several rows filling the cache exactly (T0 + t = maxT).
TEST(CudaDecode, FullCache) { NEED_GPU(); decode_case({2, 64, 3, 4, 7}, 120); }
TEST(CudaDecode, FullCacheHs128) { NEED_GPU(); decode_case({2, 128, 100, 28, 128}, 130); }
TEST(CudaDecode, SinglePositionCache) { NEED_GPU(); decode_case({2, 100, 0, 1, 1}, 140); }
// Head sizes the flash kernels refuse: odd, 1, and larger than the block (200 > 128 threads).
TEST(CudaDecode, OddHeadSize17) { NEED_GPU(); decode_case({3, 17, 11, 3, 20}, 150); }
TEST(CudaDecode, HeadSize1) { NEED_GPU(); decode_case({4, 1, 6, 2, 9}, 160); }
TEST(CudaDecode, HeadSize200) { NEED_GPU(); decode_case({1, 200, 40, 2, 50}, 170); }
TEST(CudaDecode, HeadSize48) { NEED_GPU(); decode_case({5, 48, 30, 5, 40}, 180); }
// More keys than one chunk (kDecChunk = 1024): rows crossing the 1024 boundary, and rows in a third,
// partial chunk.
TEST(CudaDecode, AcrossKeyChunks) { NEED_GPU(); decode_case({2, 64, 1020, 10, 1040}, 190); }
TEST(CudaDecode, ThreeKeyChunks) { NEED_GPU(); decode_case({2, 64, 2500, 100, 2600}, 200); }
// d12's heads (12 x 64) at its context of 1024: the last token into a full cache, a mid-sized chunk,
// and the whole context as one prefill (1024 x 12 blocks).
TEST(CudaDecode, D12LastTokenLarge) { NEED_GPU(); decode_case({12, 64, 1023, 1, 1024}, 210); }
TEST(CudaDecode, D12ChunkLarge) { NEED_GPU(); decode_case({12, 64, 500, 37, 1024}, 220); }
TEST(CudaDecode, D12PrefillLarge) { NEED_GPU(); decode_case({12, 64, 0, 1024, 1024}, 230); }
// d48's heads (25 x 64, C = 1600) near the end of its 1024 context.
TEST(CudaDecode, D48Large) { NEED_GPU(); decode_case({25, 64, 1000, 24, 1024}, 240); }

// A whole sequence decoded in uneven chunks on both backends (each call reading what the earlier ones
// cached) against the twin, and against the GPU's own flash attention_forward over the whole sequence
// (which rounds P to bf16: its tolerances, as in test_cuda_ops.cpp).
TEST(CudaDecode, ChunkedSequenceMatchesForward) {
  NEED_GPU();
  const int T = 150, NH = 3, hs = 32, C = NH * hs, maxT = 160;
  const std::vector<int> chunks = {1, 7, 1, 64, 2, 1, 50, 24};  // sums to 150
  const auto qkv = randn(size_t(T) * 3 * C, 1.f, 300);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr q = d.act(qkv);
    Ptr kc = d.act_zeros(size_t(maxT) * C), vc = d.act_zeros(size_t(maxT) * C);
    Ptr out = d.act(std::vector<float>(size_t(T) * C, 7.f));
    int T0 = 0;
    for (int t : chunks) {
      o.attention_decode(out.at(size_t(T0) * C), kc, vc, q.at(size_t(T0) * 3 * C), T0, t, maxT, C, NH);
      T0 += t;
    }
    EXPECT_EQ(T0, T);
    Ptr full = d.act_zeros(size_t(T) * C);
    float* lse = d.f32(std::vector<float>(size_t(NH) * T));
    o.attention_forward(full, lse, q, 1, T, C, NH);
    return Outs{d.get(out, size_t(T) * C), d.get(full, size_t(T) * C)};
  });
  expect_close(cpu[0], gpu[0], 1e-2, 2e-3, "chunked decode vs cpu decode", 5e-3);
  expect_close(gpu[1], gpu[0], 3e-2, 3e-2, "chunked decode vs cuda attention_forward", 1e-2);
  expect_close(cpu[1], cpu[0], 1e-5, 1e-5, "cpu: decode vs forward (sanity of the twin)");
}

// Bad sizes are a RuntimeError before anything is queued, as on the CPU; the ops stay usable.
TEST(CudaDecode, RejectsBadSizes) {
  NEED_GPU();
  auto g = make_ops("cuda", 0);
  const int C = 8, NH = 2, maxT = 4;
  Buffer qkv(*g, size_t(3) * 3 * C * 2), kc(*g, size_t(maxT) * C * 2), vc(*g, size_t(maxT) * C * 2),
      out(*g, size_t(3) * C * 2);
  auto call = [&](int T0, int t, int c, int nh) {
    g->attention_decode(out.ptr(DType::BF16), kc.ptr(DType::BF16), vc.ptr(DType::BF16), qkv.ptr(DType::BF16), T0, t,
                        maxT, c, nh);
  };
  EXPECT_THROW(call(2, 3, C, NH), RuntimeError);   // past the cache
  EXPECT_THROW(call(0, 0, C, NH), RuntimeError);   // no rows
  EXPECT_THROW(call(-1, 1, C, NH), RuntimeError);  // negative start
  EXPECT_THROW(call(0, 1, C, 3), RuntimeError);    // C % NH != 0
  EXPECT_THROW(call(0, 1, C, 0), RuntimeError);
  EXPECT_NO_THROW(call(1, 3, C, NH));  // exactly full
  g->synchronize();
}

}  // namespace
}  // namespace mc
