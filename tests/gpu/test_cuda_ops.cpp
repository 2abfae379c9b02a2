// The CUDA ops against their fp32 CPU twins (make_cpu_ops()) on the same random, bf16-representable
// inputs. Every test skips without a GPU. Tolerances are stated per op and reflect bf16 storage of
// activations (relative rounding 2^-9) with fp32 math; fp32-only paths (parameter gradients that
// are pure sums of exact bf16 products, AdamW, reductions) are held much tighter. Tests whose GPU work
// has training size end in "Large": the compute-sanitizer memcheck run filters them out (-*Large*).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/rng.h"
#include "gpu_test_util.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

namespace mc {
namespace {

using namespace test;

// ---- memory ----------------------------------------------------------------------------------

TEST(CudaOps, Basics) {
  NEED_GPU();
  auto g = make_ops("cuda", 0);
  EXPECT_EQ(g->name(), "cuda");
  EXPECT_TRUE(g->on_device());
  EXPECT_EQ(g->act_dtype(), DType::BF16);
  EXPECT_NE(g->stream(), nullptr);
  const size_t n = 1000;
  Buffer b(*g, n * 4);
  std::vector<float> h(n, 1.f);
  g->download(h.data(), b.get(), n * 4);
  for (float x : h) ASSERT_EQ(x, 0.f);  // alloc is zero-filled
  EXPECT_GE(g->peak_bytes(), n * 4);
  std::vector<float> src = randn(n, 1.f, 1);
  g->upload(b.get(), src.data(), n * 4);
  Buffer c(*g, n * 4);
  g->copy(c.get(), b.get(), n * 4);
  g->download(h.data(), c.get(), n * 4);
  expect_equal(src, h, "upload/copy/download");
  g->zero(c.get(), n * 4);
  g->download(h.data(), c.get(), n * 4);
  for (float x : h) ASSERT_EQ(x, 0.f);
}

TEST(CudaOps, OutOfMemoryIsARuntimeError) {
  NEED_GPU();
  auto g = make_ops("cuda", 0);
  try {
    g->alloc(size_t(1) << 50);  // 1 PiB
    FAIL() << "expected RuntimeError";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("MiB"), std::string::npos) << e.what();
  }
  Buffer ok(*g, 1024);  // the device is still usable afterwards
  g->synchronize();
}

// ---- encoder ---------------------------------------------------------------------------------
// forward: one bf16 rounding of a sum of two bf16 values (rel 2^-8); backward: fp32 sums of exact
// bf16 values, order differs (rel 1e-5).
TEST(CudaOps, Encoder) {
  NEED_GPU();
  const int B = 3, T = 37, C = 64, V = 20;  // few distinct tokens: many repeats in the chains
  const auto tokens = randint(size_t(B) * T, V, 2);
  const auto wte = randn(size_t(V) * C, 1.f, 3), wpe = randn(size_t(T) * C, 1.f, 4);
  const auto dout = randn(size_t(B) * T * C, 1.f, 5);
  const auto dwte0 = randn(size_t(V) * C, 1.f, 6), dwpe0 = randn(size_t(T) * C, 1.f, 7);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr out = d.act(std::vector<float>(size_t(B) * T * C));
    int* tok = d.i32(tokens);
    o.encoder_forward(out, tok, d.act(wte), d.act(wpe), B, T, C);
    float* dwte = d.f32(dwte0);
    float* dwpe = d.f32(dwpe0);
    o.encoder_backward(dwte, dwpe, d.act(dout), tok, B, T, C);
    return Outs{d.get(out, size_t(B) * T * C), d.get(dwte, dwte0.size()), d.get(dwpe, dwpe0.size())};
  });
  expect_close(cpu[0], gpu[0], 1e-2, 1e-2, "encoder out");
  expect_close(cpu[1], gpu[1], 1e-5, 1e-5, "encoder dwte (+=)");
  expect_close(cpu[2], gpu[2], 1e-5, 1e-5, "encoder dwpe (+=)");
}

// ---- layernorm -------------------------------------------------------------------------------
// out, dinp: bf16 outputs, rel 2e-2 / abs 2e-2; mean, rstd: fp32, rel 1e-4; dw, db: fp32 sums, 1e-4.
void layernorm_case(int N, int C) {
  const auto x = randn(size_t(N) * C, 2.f, 10, 0.5f);
  const auto w = randn(C, 0.5f, 11, 1.f), b = randn(C, 0.5f, 12);
  const auto dout = randn(size_t(N) * C, 1.f, 13);
  const auto dinp0 = randn(size_t(N) * C, 1.f, 14);
  const auto dw0 = randn(C, 1.f, 15), db0 = randn(C, 1.f, 16);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr out = d.act(std::vector<float>(size_t(N) * C));
    float* mean = d.f32(std::vector<float>(N));
    float* rstd = d.f32(std::vector<float>(N));
    Ptr xin = d.act(x), win = d.act(w);
    o.layernorm_forward(out, mean, rstd, xin, win, d.act(b), N, C);
    Ptr dinp = d.act(dinp0);
    float* dw = d.f32(dw0);
    float* db = d.f32(db0);
    o.layernorm_backward(dinp, dw, db, d.act(dout), xin, win, mean, rstd, N, C);
    return Outs{d.get(out, size_t(N) * C), d.get(mean, N), d.get(rstd, N), d.get(dinp, size_t(N) * C),
                d.get(dw, C), d.get(db, C)};
  });
  const std::string tag = " N=" + std::to_string(N) + " C=" + std::to_string(C);
  expect_close(cpu[0], gpu[0], 2e-2, 2e-2, "layernorm out" + tag, 1e-2);
  expect_close(cpu[1], gpu[1], 1e-4, 1e-5, "layernorm mean" + tag);
  expect_close(cpu[2], gpu[2], 1e-4, 1e-5, "layernorm rstd" + tag);
  expect_close(cpu[3], gpu[3], 2e-2, 2e-2, "layernorm dinp (+=)" + tag, 1e-2);
  expect_close(cpu[4], gpu[4], 1e-4, 1e-4, "layernorm dw (+=)" + tag);
  expect_close(cpu[5], gpu[5], 1e-4, 1e-4, "layernorm db (+=)" + tag);
}
TEST(CudaOps, LayerNormVectorised) { NEED_GPU(); layernorm_case(77, 96); }
TEST(CudaOps, LayerNormScalarPath) { NEED_GPU(); layernorm_case(40, 100); }
TEST(CudaOps, LayerNormManyRows) { NEED_GPU(); layernorm_case(1030, 768); }

// ---- matmul ----------------------------------------------------------------------------------
// out, dinp: bf16 outputs of fp32-accumulated exact bf16 products: rel 2e-2 (abs 2e-2 x sqrt(K));
// dw, dbias: fp32 accumulation throughout, rel 1e-4.
void matmul_case(int N, int C, int OC, bool with_bias) {
  const auto inp = randn(size_t(N) * C, 1.f, 20), w = randn(size_t(OC) * C, 0.5f, 21);
  const auto bias = randn(OC, 1.f, 22);
  const auto dout = randn(size_t(N) * OC, 1.f, 23);
  const auto dw0 = randn(size_t(OC) * C, 1.f, 24), db0 = randn(OC, 1.f, 25);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr out = d.act(std::vector<float>(size_t(N) * OC));
    Ptr pin = d.act(inp), pw = d.act(w);
    o.matmul_forward(out, pin, pw, with_bias ? d.act(bias) : Ptr(), N, C, OC);
    Ptr dinp = d.act(std::vector<float>(size_t(N) * C, 7.f));  // "=": the 7s must disappear
    float* dw = d.f32(dw0);
    float* db = with_bias ? d.f32(db0) : nullptr;
    o.matmul_backward(dinp, dw, db, d.act(dout), pin, pw, N, C, OC);
    Outs r{d.get(out, size_t(N) * OC), d.get(dinp, size_t(N) * C), d.get(dw, dw0.size())};
    if (with_bias) r.push_back(d.get(db, OC));
    return r;
  });
  const std::string tag = " N=" + std::to_string(N) + " C=" + std::to_string(C) + " OC=" + std::to_string(OC);
  expect_close(cpu[0], gpu[0], 2e-2, 2e-2 * std::sqrt(double(C)) * 0.5, "matmul out" + tag, 1e-2);
  expect_close(cpu[1], gpu[1], 2e-2, 2e-2 * std::sqrt(double(OC)) * 0.5, "matmul dinp" + tag, 1e-2);
  expect_close(cpu[2], gpu[2], 1e-4, 1e-4 * std::sqrt(double(N)), "matmul dw (+=)" + tag);
  if (with_bias) expect_close(cpu[3], gpu[3], 1e-4, 1e-4 * std::sqrt(double(N)), "matmul dbias (+=)" + tag);
}
TEST(CudaOps, MatmulBias) { NEED_GPU(); matmul_case(64, 128, 384, true); }
TEST(CudaOps, MatmulNoBias) { NEED_GPU(); matmul_case(96, 64, 256, false); }
TEST(CudaOps, MatmulOddShapes) { NEED_GPU(); matmul_case(37, 24, 40, true); }
TEST(CudaOps, MatmulTallSkinny) { NEED_GPU(); matmul_case(1000, 96, 8, true); }

// ---- matmul at the d12 (GPT-2 124M) training shapes --------------------------------------------
// N = B*T = 4*1024 rows (8192 once). The weight and bias are views into ONE flat parameter buffer at
// the offsets of the real d12 layout (make_layout, vocabulary 50257 padded to 50304; layer 3), the
// compute copy made from the fp32 master with convert() (bf16 on the GPU, as the trainer does), and
// dw/dbias are the same offsets of one flat fp32 gradient buffer. Tolerances are matmul_case's:
//  - out, dinp: bf16 roundings (rel 2^-9) of fp32 sums of exact bf16 products; out has std
//    0.5 sqrt(K) (inputs N(0,1), weights N(0,0.5)), so atol 2e-2 * 0.5 sqrt(K) is 2% of a typical
//    value, ~10x the bf16 rounding; rel L2 1e-2 (expected ~1e-3).
//  - dw, dbias: fp32 throughout, K = N rows, values of std sqrt(N): rel 1e-4 plus 1e-4 sqrt(N), i.e.
//    1e-4 of a typical value. Even a tensor-core accumulator that truncates instead of rounding,
//    always in one direction, loses at most N/16 * 2^-24 = 3e-5 (N = 8192) of the running sum.
// Additionally every gradient element outside the tensor's own dw/dbias slices must still be exactly
// 0 on the GPU (nothing written past the views). CPU cost (OpenBLAS, fwd + dinp + dw = 6 N C OC flop,
// at ~0.5 TFLOP/s on 16 cores; measured 75 GFLOP/s per core on a 2-core machine) is stated per test;
// building the 124M-element flat buffers adds ~1 s.
void matmul_d12_case(int N, const std::string& wname, const std::string& bname, int C, int OC) {
  const ModelConfig cfg = model_preset("d12", 50257);
  const ParamLayout lay = make_layout(cfg);
  const ParamTensor& wt = lay.find(wname);
  ASSERT_EQ(wt.numel, size_t(OC) * C) << wname;
  const ParamTensor* bt = bname.empty() ? nullptr : &lay.find(bname);
  if (bt) ASSERT_EQ(bt->numel, size_t(OC)) << bname;
  const size_t P = lay.total;
  // The tensor's own weights / bias (and their incoming gradients, to check "+=") random, the rest 0.
  std::vector<float> master(P, 0.f), grads0(P, 0.f);
  auto place = [](std::vector<float>& dst, size_t off, const std::vector<float>& src) {
    std::copy(src.begin(), src.end(), dst.begin() + std::ptrdiff_t(off));
  };
  place(master, wt.offset, randn(wt.numel, 0.5f, 21));
  place(grads0, wt.offset, randn(wt.numel, 1.f, 24));
  if (bt) {
    place(master, bt->offset, randn(OC, 1.f, 22));
    place(grads0, bt->offset, randn(OC, 1.f, 25));
  }
  const auto inp = randn(size_t(N) * C, 1.f, 20), dout = randn(size_t(N) * OC, 1.f, 23);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    const DType at = o.act_dtype();
    float* m = d.f32(master);
    Buffer params(o, P * dtype_size(at));
    o.convert(params.ptr(at), Ptr(m, DType::F32), P);
    float* g = d.f32(grads0);
    Ptr w = params.ptr(at).at(wt.offset);
    Ptr b = bt ? params.ptr(at).at(bt->offset) : Ptr();
    Ptr pin = d.act(inp);
    Ptr out = d.act_zeros(size_t(N) * OC);
    o.matmul_forward(out, pin, w, b, N, C, OC);
    Ptr dinp = d.act(std::vector<float>(size_t(N) * C, 7.f));  // "=": the 7s must disappear
    o.matmul_backward(dinp, g + wt.offset, bt ? g + bt->offset : nullptr, d.act(dout), pin, w, N, C, OC);
    Outs r;
    r.push_back(d.get(out, size_t(N) * OC));
    r.push_back(d.get(dinp, size_t(N) * C));
    r.push_back(d.get(g, P));
    return r;
  });
  auto slice = [](const std::vector<float>& v, size_t off, size_t n) {
    return std::vector<float>(v.begin() + std::ptrdiff_t(off), v.begin() + std::ptrdiff_t(off + n));
  };
  const std::string tag = " " + wname + " N=" + std::to_string(N) + " C=" + std::to_string(C) +
                          " OC=" + std::to_string(OC);
  expect_close(cpu[0], gpu[0], 2e-2, 2e-2 * std::sqrt(double(C)) * 0.5, "matmul out" + tag, 1e-2);
  expect_close(cpu[1], gpu[1], 2e-2, 2e-2 * std::sqrt(double(OC)) * 0.5, "matmul dinp" + tag, 1e-2);
  expect_close(slice(cpu[2], wt.offset, wt.numel), slice(gpu[2], wt.offset, wt.numel), 1e-4,
               1e-4 * std::sqrt(double(N)), "matmul dw (+=)" + tag);
  if (bt)
    expect_close(slice(cpu[2], bt->offset, OC), slice(gpu[2], bt->offset, OC), 1e-4, 1e-4 * std::sqrt(double(N)),
                 "matmul dbias (+=)" + tag);
  size_t stray = 0;
  for (size_t i = 0; i < P; ++i) {
    const bool own = (i >= wt.offset && i < wt.offset + wt.numel) || (bt && i >= bt->offset && i < bt->offset + OC);
    if (!own && gpu[2][i] != 0.f) ++stray;
  }
  EXPECT_EQ(stray, 0u) << "gradient elements written outside the views" << tag;
}
// 43.5 GFLOP on the CPU (~0.1 s); the flat buffers dominate (measured ~2 s on 2 cores).
TEST(CudaOps, MatmulD12QkvLarge) { NEED_GPU(); matmul_d12_case(4096, "h.3.qkvw", "h.3.qkvb", 768, 2304); }
// 14.5 GFLOP.
TEST(CudaOps, MatmulD12AttProjLarge) { NEED_GPU(); matmul_d12_case(4096, "h.3.attprojw", "h.3.attprojb", 768, 768); }
// 58 GFLOP.
TEST(CudaOps, MatmulD12FcLarge) { NEED_GPU(); matmul_d12_case(4096, "h.3.fcw", "h.3.fcb", 768, 3072); }
// 58 GFLOP; K = 3072 in the forward.
TEST(CudaOps, MatmulD12FcProjLarge) { NEED_GPU(); matmul_d12_case(4096, "h.3.fcprojw", "h.3.fcprojb", 3072, 768); }
// The tied LM head: wte (50304 x 768, no bias), K = 50304 for dinp. The most expensive test: 950 GFLOP
// (~1-2 s) plus 2e8-element out/dout arrays to generate, copy and compare (~3 s, mostly one thread);
// measured 13 s for the CPU side on 2 cores, so ~5 s on 16.
TEST(CudaOps, MatmulD12LmHeadLarge) { NEED_GPU(); matmul_d12_case(4096, "wte", "", 768, 50304); }
// N = 8192 rows (B=8, T=1024), separate buffers: 116 GFLOP (~0.3 s).
TEST(CudaOps, MatmulD12FcN8192Large) { NEED_GPU(); matmul_case(8192, 768, 3072, true); }

// ---- gelu / residual -------------------------------------------------------------------------
// bf16 outputs of fp32 math (tanhf approximations differ slightly): rel 2e-2, abs 1e-2.
void gelu_case(size_t n, size_t offset) {
  const auto x = randn(n + offset, 2.f, 30), dy = randn(n + offset, 1.f, 31), y = randn(n + offset, 1.f, 32);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr px = d.act(x).at(offset), pdy = d.act(dy).at(offset), py = d.act(y).at(offset);
    Ptr out = d.act(std::vector<float>(n + offset)).at(offset);
    Ptr din = d.act(std::vector<float>(n + offset)).at(offset);
    Ptr res = d.act(std::vector<float>(n + offset)).at(offset);
    o.gelu_forward(out, px, n);
    o.gelu_backward(din, px, pdy, n);
    o.residual_forward(res, px, py, n);
    return Outs{d.get(out, n), d.get(din, n), d.get(res, n)};
  });
  const std::string tag = " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
  expect_close(cpu[0], gpu[0], 2e-2, 1e-2, "gelu forward" + tag);
  expect_close(cpu[1], gpu[1], 2e-2, 1e-2, "gelu backward" + tag);
  expect_close(cpu[2], gpu[2], 1e-2, 1e-2, "residual" + tag);
}
TEST(CudaOps, GeluResidualVectorised) { NEED_GPU(); gelu_case(4099, 0); }
TEST(CudaOps, GeluResidualMisaligned) { NEED_GPU(); gelu_case(1001, 1); }

// ---- attention -------------------------------------------------------------------------------
// out: bf16, P rounded to bf16 inside: rel 3e-2, abs 3e-2 (rel L2 1e-2); lse: fp32, abs 1e-2;
// dqkv: P and dS rounded to bf16 for the tensor cores: rel L2 3e-2, element-wise rel/abs 6e-2.
void attention_case(int B, int T, int NH, int hs) {
  const int C = NH * hs;
  const auto qkv = randn(size_t(B) * T * 3 * C, 1.f, 40);
  const auto dout = randn(size_t(B) * T * C, 1.f, 41);
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    Ptr pqkv = d.act(qkv);
    Ptr out = d.act(std::vector<float>(size_t(B) * T * C));
    float* lse = d.f32(std::vector<float>(size_t(B) * NH * T));
    o.attention_forward(out, lse, pqkv, B, T, C, NH);
    Ptr dqkv = d.act(std::vector<float>(qkv.size(), 5.f));  // "=": the 5s must disappear
    o.attention_backward(dqkv, d.act(dout), pqkv, out, lse, B, T, C, NH);
    return Outs{d.get(out, size_t(B) * T * C), d.get(lse, size_t(B) * NH * T), d.get(dqkv, qkv.size())};
  });
  const std::string tag = " B=" + std::to_string(B) + " T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
                          " hs=" + std::to_string(hs);
  expect_close(cpu[0], gpu[0], 3e-2, 3e-2, "attention out" + tag, 1e-2);
  expect_close(cpu[1], gpu[1], 1e-3, 1e-2, "attention lse" + tag);
  expect_close(cpu[2], gpu[2], 6e-2, 6e-2, "attention dqkv" + tag, 3e-2);
}
TEST(CudaOps, AttentionHs32Ragged) { NEED_GPU(); attention_case(2, 37, 2, 32); }
TEST(CudaOps, AttentionHs32TwoTiles) { NEED_GPU(); attention_case(1, 128, 4, 32); }
TEST(CudaOps, AttentionHs64OneTile) { NEED_GPU(); attention_case(1, 64, 2, 64); }
TEST(CudaOps, AttentionHs64Ragged) { NEED_GPU(); attention_case(2, 150, 3, 64); }
TEST(CudaOps, AttentionHs128Ragged) { NEED_GPU(); attention_case(1, 70, 2, 128); }
TEST(CudaOps, AttentionT1) { NEED_GPU(); attention_case(2, 1, 2, 64); }
// hs 64 uses 64 x 64 tiles (Cfg<64>::BLK): T = 777 = 12 * 64 + 9 leaves a last tile of 9 rows, at the
// d12 head count, with a second batch row behind the ragged one. Small enough for memcheck.
TEST(CudaOps, AttentionHs64RaggedT777) { NEED_GPU(); attention_case(2, 777, 12, 64); }
// The d12 training shape B=4, T=1024, NH=12, hs=64 (16 tiles per head). The tolerances above hold at
// this length: the errors come from bf16 roundings of P, dS and the outputs (rel 2^-9 each), which do
// not grow with T; the CPU twin costs ~25 GFLOP of loops (~0.5 s on 16 cores).
TEST(CudaOps, AttentionD12Large) { NEED_GPU(); attention_case(4, 1024, 12, 64); }

TEST(CudaOps, AttentionRejectsOtherHeadSizes) {
  NEED_GPU();
  auto g = make_ops("cuda", 0);
  Buffer qkv(*g, size_t(8) * 3 * 48 * 2), out(*g, size_t(8) * 48 * 2), lse(*g, 8 * 4);
  EXPECT_THROW(g->attention_forward(out.ptr(DType::BF16), lse.f32(), qkv.ptr(DType::BF16), 1, 8, 48, 1),
               RuntimeError);
}

// ---- crossentropy ----------------------------------------------------------------------------
// losses: fp32 from identical bf16 logits, rel 1e-4 abs 1e-4; dlogits: bf16, abs 2e-3 (|d| <= dloss);
// padded columns exactly 0.
void crossentropy_case(int N, int V, int Vp) {
  const auto logits = randn(size_t(N) * Vp, 2.f, 50);
  const auto targets = randint(N, V, 51);
  const float dloss = 0.5f;
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    int* tg = d.i32(targets);
    Ptr lg = d.act(logits);
    float* losses = d.f32(std::vector<float>(N));
    o.crossentropy(losses, lg, tg, N, V, Vp, dloss, false);
    auto l1 = d.get(losses, N);
    auto untouched = d.get(lg, logits.size());
    o.crossentropy(losses, lg, tg, N, V, Vp, dloss, true);
    return Outs{l1, untouched, d.get(losses, N), d.get(lg, logits.size())};
  });
  const std::string tag = " N=" + std::to_string(N) + " V=" + std::to_string(V) + " Vp=" + std::to_string(Vp);
  expect_close(cpu[0], gpu[0], 1e-4, 1e-4, "crossentropy losses" + tag);
  expect_equal(logits, gpu[1], "crossentropy forward-only leaves logits" + tag);
  expect_close(cpu[2], gpu[2], 1e-4, 1e-4, "crossentropy losses (backward)" + tag);
  expect_close(cpu[3], gpu[3], 1e-2, 2e-3, "crossentropy dlogits" + tag);
  for (int i = 0; i < N; ++i)
    for (int c = V; c < Vp; ++c) ASSERT_EQ(gpu[3][size_t(i) * Vp + c], 0.f) << "padded column " << c << tag;
}
TEST(CudaOps, CrossEntropyVectorised) { NEED_GPU(); crossentropy_case(19, 1000, 1024); }
TEST(CudaOps, CrossEntropyScalarPath) { NEED_GPU(); crossentropy_case(7, 50, 61); }
TEST(CudaOps, CrossEntropyGpt2Vocab) { NEED_GPU(); crossentropy_case(4, 50257, 50304); }

// Note [Invalid targets] (kernels/bad_target.h): a target outside [0, V) fails on both backends with
// the CPU twin's RuntimeError naming the lowest bad row and its target: the CPU in crossentropy(),
// the GPU in the next sum() (the read-back GPT2::forward does right after). Both stay usable after.
std::string runtime_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "";
}
TEST(CudaOps, CrossEntropyRejectsOutOfRangeTargets) {
  NEED_GPU();
  const int N = 6, V = 50, Vp = 64;
  const auto logits = randn(size_t(N) * Vp, 2.f, 52);
  const auto good = randint(N, V, 53);
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  for (int bad : {-1, V, V + 7, V + 1000, INT_MIN, INT_MAX})
    for (bool backward : {false, true}) {
      std::vector<int> tg = good;
      tg[2] = bad;
      tg[4] = -5;  // a second bad row: the lowest one is reported
      const std::string want = "target " + std::to_string(bad) + " at row 2 outside [0, 50)";
      for (Ops* o : {cpu.get(), gpu.get()}) {
        const std::string tag = " [" + o->name() + ", target " + std::to_string(bad) +
                                (backward ? ", backward]" : ", forward]");
        Dev d(*o);
        Ptr lg = d.act(logits);
        float* losses = d.f32(std::vector<float>(N));
        int* t = d.i32(tg);
        const std::string msg = runtime_error_of([&] {
          o->crossentropy(losses, lg, t, N, V, Vp, 0.5f, backward);
          o->sum(losses, N);
        });
        EXPECT_NE(msg.find(want), std::string::npos) << (msg.empty() ? "no RuntimeError" : msg) << tag;
        // Usable afterwards, with no stale report: valid targets give a finite loss.
        Ptr lg2 = d.act(logits);
        o->crossentropy(losses, lg2, d.i32(good), N, V, Vp, 0.5f, backward);
        double s = NAN;
        EXPECT_NO_THROW(s = o->sum(losses, N)) << tag;
        EXPECT_TRUE(std::isfinite(s)) << tag;
      }
    }
}

// ---- adamw -----------------------------------------------------------------------------------
// fp32 throughout with IEEE sqrt/div on both sides: master/m/v rel 1e-5; the bf16 copy is the
// rounded master (one bf16 ulp, rel 1e-2).
TEST(CudaOps, AdamW) {
  NEED_GPU();
  const size_t n = 10007;
  const auto master0 = randn(n, 1.f, 60), m0 = randn(n, 0.01f, 61), g = randn(n, 0.1f, 63);
  std::vector<float> v0 = randn(n, 0.01f, 62);
  for (auto& x : v0) x = x * x;
  AdamWParams hp;
  hp.lr = 1e-3f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  auto [cpu, gpu] = both([&](Ops& o) {
    Dev d(o);
    float* master = d.f32(master0);
    float* m = d.f32(m0);
    float* v = d.f32(v0);
    const float* grad = d.f32(g);
    Ptr copy = d.act(std::vector<float>(n));
    Outs r;
    for (int t = 1; t <= 3; ++t) {
      AdamWParams h = hp;
      h.t = t;
      o.adamw(master, copy, m, v, grad, n, h);
    }
    float* master32 = d.f32(master0);
    float* copy32 = d.f32(std::vector<float>(n));
    o.adamw(master32, Ptr(copy32, DType::F32), d.f32(m0), d.f32(v0), grad, n, hp);
    return Outs{d.get(master, n), d.get(m, n), d.get(v, n), d.get(copy, n), d.get(master32, n), d.get(copy32, n)};
  });
  expect_close(cpu[0], gpu[0], 1e-5, 1e-6, "adamw master");
  expect_close(cpu[1], gpu[1], 1e-5, 1e-8, "adamw m");
  expect_close(cpu[2], gpu[2], 1e-5, 1e-10, "adamw v");
  expect_close(cpu[3], gpu[3], 1e-2, 1e-6, "adamw bf16 copy");
  expect_close(cpu[4], gpu[4], 1e-5, 1e-6, "adamw master (fp32 copy)");
  expect_equal(gpu[4], gpu[5], "adamw fp32 copy equals master");
}

// ---- reductions, scale, convert --------------------------------------------------------------
// sum / sum_squares accumulate in double on both sides: rel 1e-9. scale and convert are exact.
TEST(CudaOps, ReduceScaleConvert) {
  NEED_GPU();
  const size_t n = 300007;
  const auto x = randn(n, 1.f, 70, 0.1f);
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  double ref_s = 0, ref_q = 0;
  {
    Dev d(*cpu);
    float* p = d.f32(x);
    ref_s = cpu->sum(p, n);
    ref_q = cpu->sum_squares(p, n);
  }
  Dev d(*gpu);
  float* p = d.f32(x);
  const double s = gpu->sum(p, n), q = gpu->sum_squares(p, n);
  EXPECT_NEAR(s, ref_s, 1e-9 * std::fabs(ref_s) + 1e-9);
  EXPECT_NEAR(q, ref_q, 1e-9 * ref_q);
  EXPECT_EQ(gpu->sum(p, n), s) << "sum is not deterministic";
  EXPECT_EQ(gpu->sum(p, 0), 0.0);
  EXPECT_NEAR(gpu->sum(p, 1), double(x[0]), 1e-12);

  gpu->scale(p, 0.75f, n);
  auto scaled = d.get(p, n);
  std::vector<float> want(n);
  for (size_t i = 0; i < n; ++i) want[i] = x[i] * 0.75f;
  expect_equal(want, scaled, "scale");

  // fp32 -> bf16 rounds to nearest even (matches f32_to_bf16); bf16 -> fp32 is exact.
  std::vector<float> raw(n);
  Rng r(71);
  for (auto& v : raw) v = 3.f * r.normal();
  float* pr = d.f32(raw);
  Buffer b16(*gpu, n * 2);
  gpu->convert(b16.ptr(DType::BF16), Ptr(pr, DType::F32), n);
  std::vector<uint16_t> h(n);
  gpu->download(h.data(), b16.get(), n * 2);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += h[i] != f32_to_bf16(raw[i]);
  EXPECT_EQ(bad, 0u) << "convert f32 -> bf16";
  Buffer back(*gpu, n * 4);
  gpu->convert(back.ptr(DType::F32), b16.ptr(DType::BF16), n);
  auto b = d.get(back.f32(), n);
  for (size_t i = 0; i < n; ++i) bad += b[i] != bf16_to_f32(h[i]);
  EXPECT_EQ(bad, 0u) << "convert bf16 -> f32";
}

// ---- determinism -----------------------------------------------------------------------------
// The backward ops that reduce over rows do so in a fixed order: two runs give identical bits.
TEST(CudaOps, BackwardIsDeterministic) {
  NEED_GPU();
  auto g = make_ops("cuda", 0);
  const int B = 2, T = 200, NH = 2, hs = 64, C = NH * hs, V = 7, N = B * T;
  const auto tokens = randint(N, V, 80);
  const auto dout = randn(size_t(N) * C, 1.f, 81), x = randn(size_t(N) * C, 1.f, 82), w = randn(C, 1.f, 83);
  const auto qkv = randn(size_t(N) * 3 * C, 1.f, 84), dq = randn(size_t(N) * C, 1.f, 85);
  auto run = [&]() {
    Dev d(*g);
    float* dwte = d.f32(std::vector<float>(size_t(V) * C));
    float* dwpe = d.f32(std::vector<float>(size_t(T) * C));
    Ptr pd = d.act(dout);
    g->encoder_backward(dwte, dwpe, pd, d.i32(tokens), B, T, C);
    float* mean = d.f32(std::vector<float>(N));
    float* rstd = d.f32(std::vector<float>(N));
    Ptr px = d.act(x), pw = d.act(w);
    g->layernorm_forward(d.act(std::vector<float>(size_t(N) * C)), mean, rstd, px, pw, d.act(w), N, C);
    float* dw = d.f32(std::vector<float>(C));
    float* db = d.f32(std::vector<float>(C));
    Ptr dinp = d.act(std::vector<float>(size_t(N) * C));
    g->layernorm_backward(dinp, dw, db, pd, px, pw, mean, rstd, N, C);
    Ptr pq = d.act(qkv);
    Ptr out = d.act(std::vector<float>(size_t(N) * C));
    float* lse = d.f32(std::vector<float>(size_t(B) * NH * T));
    g->attention_forward(out, lse, pq, B, T, C, NH);
    Ptr dqkv = d.act(std::vector<float>(qkv.size()));
    g->attention_backward(dqkv, d.act(dq), pq, out, lse, B, T, C, NH);
    // matmul: dw is an fp32 GEMM reducing over the N rows (cuBLASLt), dinp a bf16 GEMM over C.
    float* mdw = d.f32(std::vector<float>(size_t(C) * C));
    float* mdb = d.f32(std::vector<float>(C));
    Ptr mdinp = d.act(std::vector<float>(size_t(N) * C));
    g->matmul_backward(mdinp, mdw, mdb, pd, px, d.act(x), N, C, C);
    return Outs{d.get(dwte, size_t(V) * C), d.get(dwpe, size_t(T) * C), d.get(dw, C),
                d.get(db, C),           d.get(dinp, size_t(N) * C),   d.get(dqkv, qkv.size()),
                d.get(mdb, C),          d.get(mdw, size_t(C) * C),    d.get(mdinp, size_t(N) * C)};
  };
  const Outs a = run(), b = run();
  const char* names[] = {"dwte", "dwpe", "ln dw", "ln db", "ln dinp", "dqkv", "matmul dbias", "matmul dw",
                         "matmul dinp"};
  ASSERT_EQ(a.size(), sizeof(names) / sizeof(names[0]));
  for (size_t i = 0; i < a.size(); ++i) expect_equal(a[i], b[i], names[i]);
}

}  // namespace
}  // namespace mc
