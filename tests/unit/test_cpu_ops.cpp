// Unit tests of the fp32 CPU ops: closed-form forwards, finite-difference checks of every backward
// (L = sum(out * R) for a fixed random R, central differences in double), "+=" vs "=" semantics,
// AdamW against hand-computed steps, bf16 conversion, reductions and bit-exact determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../../kernels/bad_target.h"  // plain C++: the invalid-target record of the CUDA ops
#include "core/dtype.h"
#include "core/errors.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

namespace mc {
namespace {

class CpuOpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::mt19937 rng{1234};

  Buffer buf(size_t n_floats) { return Buffer(*ops, n_floats * sizeof(float)); }
  Buffer rand_buf(size_t n, float lo = -1.0f, float hi = 1.0f) {
    Buffer b = buf(n);
    fill(b.f32(), n, lo, hi);
    return b;
  }
  void fill(float* p, size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    for (size_t i = 0; i < n; ++i) p[i] = d(rng);
  }
  std::vector<float> rand_vec(size_t n) {
    std::vector<float> v(n);
    fill(v.data(), n);
    return v;
  }
};

Ptr P(const Buffer& b) { return b.ptr(DType::F32); }

double dot(const float* a, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += double(a[i]) * double(r[i]);
  return s;
}

// Central-difference gradient of f() with respect to x[0..n), perturbing x in place.
std::vector<double> numgrad(float* x, size_t n, const std::function<double()>& f, float eps = 1e-2f) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) {
    const float x0 = x[i];
    x[i] = x0 + eps;
    const double fp = f();
    x[i] = x0 - eps;
    const double fm = f();
    x[i] = x0;
    // divide by the perturbation actually applied (x0 +- eps is rounded in fp32)
    g[i] = (fp - fm) / (double(x0 + eps) - double(x0 - eps));
  }
  return g;
}

// Analytic vs numerical gradient: every element within rtol * (|num| + rms(num)).
::testing::AssertionResult grads_close(const float* a, const std::vector<double>& num, double rtol = 5e-3) {
  double ss = 0;
  for (double v : num) ss += v * v;
  const double rms = std::sqrt(ss / double(num.size()));
  if (rms == 0) return ::testing::AssertionFailure() << "numerical gradient is identically zero";
  for (size_t i = 0; i < num.size(); ++i) {
    const double err = std::fabs(double(a[i]) - num[i]);
    if (!(err <= rtol * (std::fabs(num[i]) + rms)))
      return ::testing::AssertionFailure() << "element " << i << ": analytic " << a[i] << " vs numerical " << num[i]
                                           << " (rms " << rms << ")";
  }
  return ::testing::AssertionSuccess();
}

// ---- memory ---------------------------------------------------------------------------------------

TEST_F(CpuOpsTest, IdentityAndAllocZeroedAlignedTracked) {
  EXPECT_EQ(ops->name(), "cpu");
  EXPECT_FALSE(ops->on_device());
  EXPECT_EQ(ops->act_dtype(), DType::F32);
  const size_t base = ops->peak_bytes();
  {
    Buffer a(*ops, 1000), b(*ops, 3000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.get()) % 64, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % 64, 0u);
    for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(static_cast<unsigned char*>(a.get())[i], 0);
    EXPECT_GE(ops->peak_bytes(), base + 4000);
  }
  const size_t peak = ops->peak_bytes();
  {
    Buffer c(*ops, 500);  // after freeing a and b, a smaller buffer does not raise the peak
    EXPECT_EQ(ops->peak_bytes(), peak);
  }
  Buffer big(*ops, size_t(3) << 20);  // the multi-threaded zeroing path
  const float* f = big.f32();
  for (size_t i = 0; i < (size_t(3) << 20) / 4; i += 4099) ASSERT_EQ(f[i], 0.0f);
}

TEST_F(CpuOpsTest, CopyAndConvertRoundTrip) {
  const size_t n = 5000;
  std::vector<float> host(n);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-20, 20);
  for (size_t i = 0; i < n; ++i) host[i] = std::ldexp(mant(rng), ex(rng));
  host[0] = 1.5f;
  host[1] = -2.0f;
  host[2] = 0.0f;
  Buffer f = buf(n), h(*ops, n * 2), back = buf(n), h2(*ops, n * 2);
  ops->upload(f.get(), host.data(), n * 4);
  ops->convert(h.ptr(DType::BF16), f.ptr(DType::F32), n);
  ops->convert(h2.ptr(DType::BF16), h.ptr(DType::BF16), n);  // same-type copy
  EXPECT_EQ(std::memcmp(h.get(), h2.get(), n * 2), 0);
  ops->convert(back.ptr(DType::F32), h2.ptr(DType::BF16), n);
  std::vector<float> out(n);
  ops->download(out.data(), back.get(), n * 4);
  EXPECT_EQ(out[0], 1.5f);  // exactly representable values survive exactly
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], 0.0f);
  for (size_t i = 0; i < n; ++i) {
    // 8 significant bits, round to nearest: error <= half an ulp = 2^-8 * 2^floor(log2|x|) <= 2^-8 |x|
    ASSERT_LE(std::fabs(out[i] - host[i]), std::ldexp(std::fabs(host[i]), -8)) << i;
    ASSERT_EQ(out[i], bf16_to_f32(f32_to_bf16(host[i]))) << i;
  }
  Buffer c = buf(n);
  ops->copy(c.get(), f.get(), n * 4);
  EXPECT_EQ(std::memcmp(c.get(), host.data(), n * 4), 0);
  ops->zero(c.get(), n * 4);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(c.f32()[i], 0.0f);
}

// ---- encoder --------------------------------------------------------------------------------------

TEST_F(CpuOpsTest, EncoderForwardClosedForm) {
  const int B = 2, T = 3, C = 4, V = 5;
  Buffer wte = buf(V * C), wpe = buf(T * C), out = buf(B * T * C), tok(*ops, B * T * 4);
  for (int v = 0; v < V; ++v)
    for (int c = 0; c < C; ++c) wte.f32()[v * C + c] = float(100 * v + c);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) wpe.f32()[t * C + c] = float(10 * t) * 0.5f;
  const int tokens[] = {4, 0, 4, 2, 2, 1};
  std::memcpy(tok.get(), tokens, sizeof(tokens));
  ops->encoder_forward(P(out), tok.i32(), P(wte), P(wpe), B, T, C);
  for (int n = 0; n < B * T; ++n)
    for (int c = 0; c < C; ++c) EXPECT_EQ(out.f32()[n * C + c], float(100 * tokens[n] + c) + float(10 * (n % T)) * 0.5f);
}

TEST_F(CpuOpsTest, EncoderBackwardGradCheck) {
  const int B = 2, T = 3, C = 4, V = 5;
  Buffer wte = rand_buf(V * C), wpe = rand_buf(T * C), out = buf(B * T * C), tok(*ops, B * T * 4);
  const int tokens[] = {4, 0, 4, 2, 4, 1};  // token 4 repeats: its gradient row sums three rows
  std::memcpy(tok.get(), tokens, sizeof(tokens));
  const auto R = rand_vec(B * T * C);
  auto loss = [&] {
    ops->encoder_forward(P(out), tok.i32(), P(wte), P(wpe), B, T, C);
    return dot(out.f32(), R);
  };
  Buffer dout = buf(B * T * C), dwte = buf(V * C), dwpe = buf(T * C);
  std::memcpy(dout.get(), R.data(), R.size() * 4);
  ops->encoder_backward(dwte.f32(), dwpe.f32(), P(dout), tok.i32(), B, T, C);
  EXPECT_TRUE(grads_close(dwte.f32(), numgrad(wte.f32(), V * C, loss)));
  EXPECT_TRUE(grads_close(dwpe.f32(), numgrad(wpe.f32(), T * C, loss)));
  // token 3 never occurs: its row stays exactly zero
  for (int c = 0; c < C; ++c) EXPECT_EQ(dwte.f32()[3 * C + c], 0.0f);
}

// ---- layernorm ------------------------------------------------------------------------------------

TEST_F(CpuOpsTest, LayernormForwardMatchesDouble) {
  const int N = 5, C = 16;
  Buffer inp = rand_buf(N * C, -2, 3), w = rand_buf(C), b = rand_buf(C), out = buf(N * C), mean = buf(N), rstd = buf(N);
  ops->layernorm_forward(P(out), mean.f32(), rstd.f32(), P(inp), P(w), P(b), N, C);
  for (int n = 0; n < N; ++n) {
    const float* x = inp.f32() + n * C;
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    const double rs = 1.0 / std::sqrt(v / C + 1e-5);
    EXPECT_NEAR(mean.f32()[n], m, 1e-6);
    EXPECT_NEAR(rstd.f32()[n], rs, 1e-5 * rs);
    for (int c = 0; c < C; ++c)
      EXPECT_NEAR(out.f32()[n * C + c], (x[c] - m) * rs * w.f32()[c] + b.f32()[c], 1e-5);
  }
}

struct LnCase {
  int N = 3, C = 8;
  Buffer inp, w, b, out, mean, rstd, dout, dinp, dw, db;
  std::vector<float> R;
};

class LayernormGrad : public CpuOpsTest {
 protected:
  LnCase k;
  void SetUp() override {
    k.inp = rand_buf(k.N * k.C, -2, 2);
    k.w = rand_buf(k.C, 0.5f, 1.5f);
    k.b = rand_buf(k.C);
    k.out = buf(k.N * k.C);
    k.mean = buf(k.N);
    k.rstd = buf(k.N);
    k.R = rand_vec(k.N * k.C);
    k.dout = buf(k.N * k.C);
    std::memcpy(k.dout.get(), k.R.data(), k.R.size() * 4);
    k.dinp = buf(k.N * k.C);
    k.dw = buf(k.C);
    k.db = buf(k.C);
  }
  double loss() {
    ops->layernorm_forward(P(k.out), k.mean.f32(), k.rstd.f32(), P(k.inp), P(k.w), P(k.b), k.N, k.C);
    return dot(k.out.f32(), k.R);
  }
  void backward() {
    loss();  // mean/rstd of the unperturbed input
    ops->layernorm_backward(P(k.dinp), k.dw.f32(), k.db.f32(), P(k.dout), P(k.inp), P(k.w), k.mean.f32(),
                            k.rstd.f32(), k.N, k.C);
  }
};

TEST_F(LayernormGrad, GradCheck) {
  backward();
  auto f = [&] { return loss(); };
  EXPECT_TRUE(grads_close(k.dinp.f32(), numgrad(k.inp.f32(), k.N * k.C, f)));
  EXPECT_TRUE(grads_close(k.dw.f32(), numgrad(k.w.f32(), k.C, f)));
  EXPECT_TRUE(grads_close(k.db.f32(), numgrad(k.b.f32(), k.C, f)));
}

// The comparison is sharp enough to catch a wrong backward: small corruptions of a correct
// gradient are rejected.
TEST_F(LayernormGrad, GradCheckRejectsWrongGradients) {
  backward();
  const auto num = numgrad(k.inp.f32(), k.N * k.C, [&] { return loss(); });
  ASSERT_TRUE(grads_close(k.dinp.f32(), num));
  std::vector<float> bad(k.dinp.f32(), k.dinp.f32() + k.N * k.C);
  double rms = 0;
  for (double v : num) rms += v * v;
  rms = std::sqrt(rms / double(num.size()));
  bad[5] += float(0.05 * rms);
  EXPECT_FALSE(grads_close(bad.data(), num));
  // a classic bug: forgetting the mean(g) term of dx = rstd (g - mean(g) - xhat mean(g xhat))
  std::vector<float> bug(k.dinp.f32(), k.dinp.f32() + k.N * k.C);
  for (int n = 0; n < k.N; ++n) {
    double mg = 0;
    for (int c = 0; c < k.C; ++c) mg += double(k.w.f32()[c]) * k.R[size_t(n * k.C + c)];
    mg /= k.C;
    for (int c = 0; c < k.C; ++c) bug[size_t(n * k.C + c)] += float(k.rstd.f32()[n] * mg);
  }
  EXPECT_FALSE(grads_close(bug.data(), num));
}

TEST_F(LayernormGrad, BackwardAccumulates) {
  fill(k.dinp.f32(), k.N * k.C);
  fill(k.dw.f32(), k.C);
  fill(k.db.f32(), k.C);
  const std::vector<float> dinp0(k.dinp.f32(), k.dinp.f32() + k.N * k.C), dw0(k.dw.f32(), k.dw.f32() + k.C),
      db0(k.db.f32(), k.db.f32() + k.C);
  backward();
  const std::vector<float> dinp1(k.dinp.f32(), k.dinp.f32() + k.N * k.C), dw1(k.dw.f32(), k.dw.f32() + k.C),
      db1(k.db.f32(), k.db.f32() + k.C);
  backward();
  for (int i = 0; i < k.N * k.C; ++i) EXPECT_NEAR(k.dinp.f32()[i] - dinp0[i], 2 * (dinp1[i] - dinp0[i]), 1e-5);
  for (int c = 0; c < k.C; ++c) {
    EXPECT_NEAR(k.dw.f32()[c] - dw0[c], 2 * (dw1[c] - dw0[c]), 1e-5);
    EXPECT_NEAR(k.db.f32()[c] - db0[c], 2 * (db1[c] - db0[c]), 1e-5);
  }
}

// ---- matmul ---------------------------------------------------------------------------------------

TEST_F(CpuOpsTest, MatmulForwardClosedForm) {
  // inp (2,2) @ w(3,2)^T + bias
  Buffer inp = buf(4), w = buf(6), bias = buf(3), out = buf(6);
  const float I[] = {1, 2, 3, 4}, W[] = {1, 0, 0, 1, 1, 1}, Bi[] = {0.5f, -1, 2};
  std::memcpy(inp.get(), I, sizeof(I));
  std::memcpy(w.get(), W, sizeof(W));
  std::memcpy(bias.get(), Bi, sizeof(Bi));
  ops->matmul_forward(P(out), P(inp), P(w), P(bias), 2, 2, 3);
  const float want[] = {1.5f, 1, 5, 3.5f, 3, 9};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out.f32()[i], want[i]) << i;
  ops->matmul_forward(P(out), P(inp), P(w), Ptr(), 2, 2, 3);  // no bias, and "=" over old contents
  const float want2[] = {1, 2, 3, 3, 4, 7};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out.f32()[i], want2[i]) << i;
}

TEST_F(CpuOpsTest, MatmulBackwardGradCheckAndAccumulation) {
  const int N = 4, C = 5, OC = 3;
  Buffer inp = rand_buf(N * C), w = rand_buf(OC * C), bias = rand_buf(OC), out = buf(N * OC);
  const auto R = rand_vec(N * OC);
  auto f = [&] {
    ops->matmul_forward(P(out), P(inp), P(w), P(bias), N, C, OC);
    return dot(out.f32(), R);
  };
  Buffer dout = buf(N * OC), dinp = buf(N * C), dw = buf(OC * C), dbias = buf(OC);
  std::memcpy(dout.get(), R.data(), R.size() * 4);
  fill(dinp.f32(), N * C);  // "=": old contents must not leak into dinp
  ops->matmul_backward(P(dinp), dw.f32(), dbias.f32(), P(dout), P(inp), P(w), N, C, OC);
  EXPECT_TRUE(grads_close(dinp.f32(), numgrad(inp.f32(), N * C, f)));
  EXPECT_TRUE(grads_close(dw.f32(), numgrad(w.f32(), OC * C, f)));
  EXPECT_TRUE(grads_close(dbias.f32(), numgrad(bias.f32(), OC, f)));

  // a second call doubles dw and dbias but rewrites dinp
  const std::vector<float> dinp1(dinp.f32(), dinp.f32() + N * C), dw1(dw.f32(), dw.f32() + OC * C),
      db1(dbias.f32(), dbias.f32() + OC);
  ops->matmul_backward(P(dinp), dw.f32(), dbias.f32(), P(dout), P(inp), P(w), N, C, OC);
  for (int i = 0; i < N * C; ++i) EXPECT_EQ(dinp.f32()[i], dinp1[i]);
  for (int i = 0; i < OC * C; ++i) EXPECT_NEAR(dw.f32()[i], 2 * dw1[i], 1e-6);
  for (int i = 0; i < OC; ++i) EXPECT_NEAR(dbias.f32()[i], 2 * db1[i], 1e-6);
  // dbias may be null
  ops->matmul_backward(P(dinp), dw.f32(), nullptr, P(dout), P(inp), P(w), N, C, OC);
  for (int i = 0; i < OC; ++i) EXPECT_NEAR(dbias.f32()[i], 2 * db1[i], 1e-6);
}

// ---- gelu / residual / scale ------------------------------------------------------------------------

TEST_F(CpuOpsTest, GeluForwardMatchesTanhFormula) {
  const size_t n = 2001;
  Buffer inp = buf(n), out = buf(n);
  for (size_t i = 0; i < n; ++i) inp.f32()[i] = -10.0f + 20.0f * float(i) / float(n - 1);
  ops->gelu_forward(P(out), P(inp), n);
  for (size_t i = 0; i < n; ++i) {
    const double x = inp.f32()[i];
    const double want = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    ASSERT_NEAR(out.f32()[i], want, 1e-6 * (1 + std::fabs(want))) << x;
  }
  EXPECT_EQ(out.f32()[n / 2], 0.0f);  // gelu(0) = 0
}

TEST_F(CpuOpsTest, GeluBackwardGradCheck) {
  const size_t n = 64;
  Buffer inp = rand_buf(n, -4, 4), out = buf(n), dout = buf(n), dinp = buf(n);
  const auto R = rand_vec(n);
  std::memcpy(dout.get(), R.data(), n * 4);
  ops->gelu_backward(P(dinp), P(inp), P(dout), n);
  auto f = [&] {
    ops->gelu_forward(P(out), P(inp), n);
    return dot(out.f32(), R);
  };
  EXPECT_TRUE(grads_close(dinp.f32(), numgrad(inp.f32(), n, f, 1e-3f)));
}

TEST_F(CpuOpsTest, ResidualAndScale) {
  const size_t n = 1000;
  Buffer a = rand_buf(n), b = rand_buf(n), out = buf(n);
  ops->residual_forward(P(out), P(a), P(b), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(out.f32()[i], a.f32()[i] + b.f32()[i]);
  ops->scale(out.f32(), 0.5f, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(out.f32()[i], (a.f32()[i] + b.f32()[i]) * 0.5f);
}

// ---- attention ------------------------------------------------------------------------------------

// Naive reference in double with the full T x T score matrix.
void attention_ref(std::vector<double>& out, std::vector<double>& lse, const float* qkv, int B, int T, int C,
                   int NH) {
  const int hs = C / NH;
  out.assign(size_t(B) * T * C, 0.0);
  lse.assign(size_t(B) * NH * T, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      std::vector<double> S(size_t(T) * T, -INFINITY);
      for (int i = 0; i < T; ++i)
        for (int j = 0; j <= i; ++j) {
          double s = 0;
          for (int d = 0; d < hs; ++d)
            s += double(qkv[(size_t(b) * T + i) * 3 * C + h * hs + d]) *
                 double(qkv[(size_t(b) * T + j) * 3 * C + C + h * hs + d]);
          S[size_t(i) * T + j] = s / std::sqrt(double(hs));
        }
      for (int i = 0; i < T; ++i) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < T; ++j) mx = std::max(mx, S[size_t(i) * T + j]);
        for (int j = 0; j < T; ++j) sum += std::exp(S[size_t(i) * T + j] - mx);  // exp(-inf) = 0 masks
        lse[(size_t(b) * NH + h) * T + i] = mx + std::log(sum);
        for (int j = 0; j < T; ++j) {
          const double p = std::exp(S[size_t(i) * T + j] - mx) / sum;
          for (int d = 0; d < hs; ++d)
            out[(size_t(b) * T + i) * C + h * hs + d] += p * double(qkv[(size_t(b) * T + j) * 3 * C + 2 * C + h * hs + d]);
        }
      }
    }
}

TEST_F(CpuOpsTest, AttentionForwardMatchesNaiveAndIsCausal) {
  const int B = 2, T = 7, C = 12, NH = 3;
  Buffer qkv = rand_buf(size_t(B) * T * 3 * C, -2, 2), out = buf(size_t(B) * T * C), lse = buf(size_t(B) * NH * T);
  ops->attention_forward(P(out), lse.f32(), P(qkv), B, T, C, NH);
  std::vector<double> ro, rl;
  attention_ref(ro, rl, qkv.f32(), B, T, C, NH);
  for (size_t i = 0; i < ro.size(); ++i) ASSERT_NEAR(out.f32()[i], ro[i], 1e-5) << i;
  for (size_t i = 0; i < rl.size(); ++i) ASSERT_NEAR(lse.f32()[i], rl[i], 1e-5) << i;
  // the first query attends only to itself: out = v_0, lse = q_0.k_0 / sqrt(hs)
  for (int d = 0; d < C; ++d) EXPECT_FLOAT_EQ(out.f32()[d], qkv.f32()[2 * C + d]);

  // causality: changing the last token's k and v in batch 0 leaves every earlier output unchanged
  const std::vector<float> out0(out.f32(), out.f32() + size_t(B) * T * C);
  for (int c = C; c < 3 * C; ++c) qkv.f32()[size_t(T - 1) * 3 * C + c] += 1.0f;
  ops->attention_forward(P(out), lse.f32(), P(qkv), B, T, C, NH);
  EXPECT_EQ(std::memcmp(out.f32(), out0.data(), size_t(T - 1) * C * 4), 0);
  bool last_changed = false;
  for (int c = 0; c < C; ++c) last_changed |= out.f32()[size_t(T - 1) * C + c] != out0[size_t(T - 1) * C + c];
  EXPECT_TRUE(last_changed);
  // and batch 1 is untouched
  EXPECT_EQ(std::memcmp(out.f32() + size_t(T) * C, out0.data() + size_t(T) * C, size_t(T) * C * 4), 0);
}

TEST_F(CpuOpsTest, AttentionBackwardGradCheck) {
  const int B = 2, T = 5, C = 8, NH = 2;
  const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
  Buffer qkv = rand_buf(nqkv), out = buf(nout), lse = buf(size_t(B) * NH * T);
  const auto R = rand_vec(nout);
  auto f = [&] {
    ops->attention_forward(P(out), lse.f32(), P(qkv), B, T, C, NH);
    return dot(out.f32(), R);
  };
  f();
  Buffer dout = buf(nout), dqkv = rand_buf(nqkv);  // "=": garbage in dqkv must be overwritten
  std::memcpy(dout.get(), R.data(), nout * 4);
  ops->attention_backward(P(dqkv), P(dout), P(qkv), P(out), lse.f32(), B, T, C, NH);
  EXPECT_TRUE(grads_close(dqkv.f32(), numgrad(qkv.f32(), nqkv, f)));
  // the first query attends only to itself with probability 1, so its q gets (numerically) no gradient
  for (int d = 0; d < C; ++d) EXPECT_NEAR(dqkv.f32()[d], 0.0f, 1e-6);
}

// ---- cross-entropy ---------------------------------------------------------------------------------

TEST_F(CpuOpsTest, CrossentropyUniformLogits) {
  const int N = 3, V = 10, Vp = 16;
  Buffer logits = buf(N * Vp), losses = buf(N), tg(*ops, N * 4);
  for (int i = 0; i < N; ++i)
    for (int j = V; j < Vp; ++j) logits.f32()[i * Vp + j] = 1e9f;  // padding must be ignored
  const int targets[] = {0, 9, 4};
  std::memcpy(tg.get(), targets, sizeof(targets));
  ops->crossentropy(losses.f32(), P(logits), tg.i32(), N, V, Vp, 0.5f, true);
  for (int i = 0; i < N; ++i) {
    EXPECT_NEAR(losses.f32()[i], std::log(10.0), 1e-6);
    for (int j = 0; j < Vp; ++j) {
      const float want = j >= V ? 0.0f : (0.1f - (j == targets[i] ? 1.0f : 0.0f)) * 0.5f;
      EXPECT_NEAR(logits.f32()[i * Vp + j], want, 1e-7) << i << "," << j;
    }
  }
  EXPECT_NEAR(ops->sum(losses.f32(), N), 3 * std::log(10.0), 1e-5);
}

TEST_F(CpuOpsTest, CrossentropyBackwardGradCheck) {
  const int N = 3, V = 7, Vp = 8;
  const float dloss = 1.0f / 3;
  Buffer logits = rand_buf(N * Vp, -3, 3), work = buf(N * Vp), losses = buf(N), tg(*ops, N * 4);
  for (int i = 0; i < N; ++i) logits.f32()[i * Vp + V] = 50.0f;  // large padded logit, ignored
  const int targets[] = {2, 6, 0};
  std::memcpy(tg.get(), targets, sizeof(targets));
  auto f = [&] {
    ops->copy(work.get(), logits.get(), N * Vp * 4);
    ops->crossentropy(losses.f32(), P(work), tg.i32(), N, V, Vp, 0.0f, false);
    double s = 0;
    for (int i = 0; i < N; ++i) s += double(dloss) * losses.f32()[i];
    return s;
  };
  const double L = f();
  ops->copy(work.get(), logits.get(), N * Vp * 4);
  ops->crossentropy(losses.f32(), P(work), tg.i32(), N, V, Vp, dloss, true);
  EXPECT_NEAR(double(dloss) * (losses.f32()[0] + losses.f32()[1] + losses.f32()[2]), L, 1e-6);  // same losses
  const std::vector<float> dlogits(work.f32(), work.f32() + N * Vp);
  const auto num = numgrad(logits.f32(), N * Vp, f, 1e-3f);
  EXPECT_TRUE(grads_close(dlogits.data(), num));
  for (int i = 0; i < N; ++i) {
    EXPECT_EQ(dlogits[size_t(i * Vp + V)], 0.0f);
    EXPECT_EQ(num[size_t(i * Vp + V)], 0.0);
  }
  // losses against a direct double computation
  for (int i = 0; i < N; ++i) {
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < V; ++j) mx = std::max(mx, double(logits.f32()[i * Vp + j]));
    for (int j = 0; j < V; ++j) s += std::exp(double(logits.f32()[i * Vp + j]) - mx);
    EXPECT_NEAR(losses.f32()[i], mx + std::log(s) - logits.f32()[i * Vp + targets[i]], 1e-5);
  }
}

// Note [Invalid targets] (kernels/bad_target.h): the CPU twin refuses a target outside [0, V) before
// touching anything, naming the first bad row and its target in the wording the CUDA ops reuse.
TEST_F(CpuOpsTest, CrossentropyRejectsOutOfRangeTargets) {
  const int N = 5, V = 10, Vp = 16;
  for (int bad : {-1, V, V + 3, V + 1000, INT_MIN, INT_MAX})
    for (bool backward : {false, true}) {
      Buffer logits = rand_buf(N * Vp), losses = buf(N), tg(*ops, N * 4);
      const std::vector<float> before(logits.f32(), logits.f32() + N * Vp);
      for (int i = 0; i < N; ++i) losses.f32()[i] = 42.0f;
      const int targets[] = {1, 0, bad, 9, -7};  // rows 2 and 4 are bad: row 2 is reported
      std::memcpy(tg.get(), targets, sizeof(targets));
      try {
        ops->crossentropy(losses.f32(), P(logits), tg.i32(), N, V, Vp, 0.5f, backward);
        ADD_FAILURE() << "no error for target " << bad;
      } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(kern::bad_target_message(2, bad, V)), std::string::npos) << e.what();
      }
      EXPECT_EQ(0, std::memcmp(before.data(), logits.f32(), before.size() * 4)) << "logits touched, target " << bad;
      for (int i = 0; i < N; ++i) EXPECT_EQ(losses.f32()[i], 42.0f) << "losses touched, target " << bad;
    }
}

// The record the CUDA kernel keeps of a bad target (host side of Note [Invalid targets]): packing
// round-trips every int, the minimum over records is the lowest row whatever the targets' signs, and
// "none" is larger than every record.
TEST(BadTargetRecord, PackingOrdersByRowAndRoundTrips) {
  int row = -1, target = 0;
  EXPECT_FALSE(kern::unpack_bad_target(kern::kNoBadTarget, &row, &target));
  const int rows[] = {0, 1, 37, 4095, INT_MAX};
  const int targets[] = {-1, 0, 50257, 50304, INT_MIN, INT_MAX, -5};
  for (int r : rows)
    for (int t : targets) {
      const unsigned long long rec = kern::pack_bad_target(r, t);
      EXPECT_LT(rec, kern::kNoBadTarget);
      ASSERT_TRUE(kern::unpack_bad_target(rec, &row, &target));
      EXPECT_EQ(row, r);
      EXPECT_EQ(target, t);
    }
  // What atomicMin leaves after rows 9 (target -1), 3 (target 50304) and 7 (target INT_MIN) fail.
  unsigned long long rec = kern::kNoBadTarget;
  for (auto [r, t] : {std::pair<int, int>{9, -1}, {3, 50304}, {7, INT_MIN}}) rec = std::min(rec, kern::pack_bad_target(r, t));
  ASSERT_TRUE(kern::unpack_bad_target(rec, &row, &target));
  EXPECT_EQ(row, 3);
  EXPECT_EQ(target, 50304);
  EXPECT_EQ(kern::bad_target_message(3, 50304, 50257), "crossentropy: target 50304 at row 3 outside [0, 50257)");
}

// ---- reductions and the optimizer ------------------------------------------------------------------

TEST_F(CpuOpsTest, SumAndSumSquaresClosedForm) {
  const size_t n = 100003;  // not a multiple of any chunk size
  Buffer x = buf(n);
  for (size_t i = 0; i < n; ++i) x.f32()[i] = float(i + 1);
  const double N = double(n);
  EXPECT_EQ(ops->sum(x.f32(), n), N * (N + 1) / 2);  // exact: every partial is an integer < 2^53
  EXPECT_EQ(ops->sum_squares(x.f32(), n), N * (N + 1) * (2 * N + 1) / 6);
  EXPECT_EQ(ops->sum_squares(x.f32(), 0), 0.0);
}

TEST_F(CpuOpsTest, AdamWHandComputedSteps) {
  // lr 0.1, betas (0.9, 0.95), wd 0.01, grad_scale 0.5. Step 1 from m = v = 0: mhat = g, vhat = g^2,
  // so the update is sign(g) (up to eps) plus wd * master.
  Buffer master = buf(3), m = buf(3), v = buf(3), grad = buf(3), copy(*ops, 3 * 2), copyf = buf(3);
  const float w0[] = {1.0f, -2.0f, 0.5f}, g0[] = {0.2f, -0.4f, 0.0f};
  std::memcpy(master.get(), w0, sizeof(w0));
  std::memcpy(grad.get(), g0, sizeof(g0));
  AdamWParams hp;
  hp.lr = 0.1f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.01f;
  hp.grad_scale = 0.5f;
  hp.t = 1;
  ops->adamw(master.f32(), copy.ptr(DType::BF16), m.f32(), v.f32(), grad.f32(), 3, hp);
  // g = (0.1, -0.2, 0): m = 0.1 g, v = 0.05 g^2
  EXPECT_NEAR(m.f32()[0], 0.01, 1e-8);
  EXPECT_NEAR(m.f32()[1], -0.02, 1e-8);
  EXPECT_EQ(m.f32()[2], 0.0f);
  EXPECT_NEAR(v.f32()[0], 5e-4, 5e-10);
  EXPECT_NEAR(v.f32()[1], 2e-3, 2e-9);
  EXPECT_NEAR(master.f32()[0], 1.0 - 0.1 * (1.0 + 0.01 * 1.0), 1e-6);    // 0.899
  EXPECT_NEAR(master.f32()[1], -2.0 - 0.1 * (-1.0 + 0.01 * -2.0), 1e-6);  // -1.898
  EXPECT_NEAR(master.f32()[2], 0.5 - 0.1 * (0.0 + 0.01 * 0.5), 1e-7);     // 0.4995: decay only
  const uint16_t* h = static_cast<const uint16_t*>(copy.get());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h[i], f32_to_bf16(master.f32()[i]));

  // Step 2 on element 0 (g = 0.1 again): m = 0.019, v = 9.75e-4, mhat = 0.019 / 0.19 = 0.1,
  // vhat = 9.75e-4 / 0.0975 = 0.01, so the update is again 1 + wd * master = 1.00899.
  hp.t = 2;
  ops->adamw(master.f32(), copyf.ptr(DType::F32), m.f32(), v.f32(), grad.f32(), 3, hp);
  EXPECT_NEAR(m.f32()[0], 0.019, 1e-8);
  EXPECT_NEAR(v.f32()[0], 9.75e-4, 1e-9);
  EXPECT_NEAR(master.f32()[0], 0.899 - 0.1 * 1.00899, 2e-6);  // 0.798101
  for (int i = 0; i < 3; ++i) EXPECT_EQ(copyf.f32()[i], master.f32()[i]);

  // param_copy may alias master (fp32 training without a separate copy), or be absent
  const float before = master.f32()[0];
  hp.t = 3;
  ops->adamw(master.f32(), master.ptr(DType::F32), m.f32(), v.f32(), grad.f32(), 3, hp);
  EXPECT_LT(master.f32()[0], before);
  ops->adamw(master.f32(), Ptr(), m.f32(), v.f32(), grad.f32(), 3, hp);
  EXPECT_TRUE(std::isfinite(master.f32()[0]));
}

// ---- determinism ----------------------------------------------------------------------------------

// One small transformer-block-like chain forward and backward; returns every output and gradient.
std::vector<float> run_chain(Ops& ops, uint32_t seed) {
  const int B = 2, T = 16, C = 32, NH = 4, V = 50, Vp = 64, N = B * T;
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  auto rb = [&](size_t n) {
    Buffer b(ops, n * 4);
    for (size_t i = 0; i < n; ++i) b.f32()[i] = d(g);
    return b;
  };
  Buffer wte = rb(Vp * C), wpe = rb(T * C), lnw = rb(C), lnb = rb(C), qkvw = rb(3 * C * C), qkvb = rb(3 * C);
  Buffer tok(ops, N * 4), tgt(ops, N * 4);
  for (int i = 0; i < N; ++i) {
    tok.i32()[i] = int(g() % V);
    tgt.i32()[i] = int(g() % V);
  }
  Buffer x(ops, N * C * 4), ln(ops, N * C * 4), mean(ops, N * 4), rstd(ops, N * 4), qkv(ops, N * 3 * C * 4),
      att(ops, N * C * 4), lse(ops, B * NH * T * 4), gel(ops, N * C * 4), logits(ops, N * Vp * 4), losses(ops, N * 4);
  ops.encoder_forward(P(x), tok.i32(), P(wte), P(wpe), B, T, C);
  ops.layernorm_forward(P(ln), mean.f32(), rstd.f32(), P(x), P(lnw), P(lnb), N, C);
  ops.matmul_forward(P(qkv), P(ln), P(qkvw), P(qkvb), N, C, 3 * C);
  ops.attention_forward(P(att), lse.f32(), P(qkv), B, T, C, NH);
  ops.gelu_forward(P(gel), P(att), N * C);
  ops.matmul_forward(P(logits), P(gel), P(wte), Ptr(), N, C, Vp);
  ops.crossentropy(losses.f32(), P(logits), tgt.i32(), N, V, Vp, 1.0f / N, true);
  Buffer dwte(ops, Vp * C * 4), dwpe(ops, T * C * 4), dlnw(ops, C * 4), dlnb(ops, C * 4), dqkvw(ops, 3 * C * C * 4),
      dqkvb(ops, 3 * C * 4), dgel(ops, N * C * 4), datt(ops, N * C * 4), dqkv(ops, N * 3 * C * 4), dln(ops, N * C * 4),
      dx(ops, N * C * 4);
  ops.matmul_backward(P(dgel), dwte.f32(), nullptr, P(logits), P(gel), P(wte), N, C, Vp);
  ops.gelu_backward(P(datt), P(att), P(dgel), N * C);
  ops.attention_backward(P(dqkv), P(datt), P(qkv), P(att), lse.f32(), B, T, C, NH);
  ops.matmul_backward(P(dln), dqkvw.f32(), dqkvb.f32(), P(dqkv), P(ln), P(qkvw), N, C, 3 * C);
  ops.layernorm_backward(P(dx), dlnw.f32(), dlnb.f32(), P(dln), P(x), P(lnw), mean.f32(), rstd.f32(), N, C);
  ops.encoder_backward(dwte.f32(), dwpe.f32(), P(dx), tok.i32(), B, T, C);
  std::vector<float> all;
  for (const Buffer* b : {&losses, &logits, &dwte, &dwpe, &dlnw, &dlnb, &dqkvw, &dqkvb, &dqkv, &dx})
    all.insert(all.end(), b->f32(), b->f32() + b->bytes() / 4);
  const double ss = ops.sum_squares(dwte.f32(), Vp * C);
  all.push_back(float(ss));
  return all;
}

TEST_F(CpuOpsTest, DeterministicBitIdentical) {
  const auto a = run_chain(*ops, 7), b = run_chain(*ops, 7);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  for (float v : a) ASSERT_TRUE(std::isfinite(v));
  const auto c = run_chain(*ops, 8);  // and the check is not vacuous
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
}

// The channel-split reductions (encoder/layernorm backward, sums) do not depend on the thread count.
TEST_F(CpuOpsTest, ReductionsIndependentOfThreadCount) {
  const int B = 3, T = 8, C = 40, V = 6, N = B * T;
  Buffer dout = rand_buf(N * C), inp = rand_buf(N * C), w = rand_buf(C), mean = buf(N), rstd = buf(N),
         lnout = buf(N * C), tok(*ops, N * 4);
  for (int i = 0; i < N; ++i) tok.i32()[i] = i % V;
  ops->layernorm_forward(P(lnout), mean.f32(), rstd.f32(), P(inp), P(w), P(w), N, C);
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Buffer dwte = buf(V * C), dwpe = buf(T * C), dinp = buf(N * C), dw = buf(C), db = buf(C);
    ops->encoder_backward(dwte.f32(), dwpe.f32(), P(dout), tok.i32(), B, T, C);
    ops->layernorm_backward(P(dinp), dw.f32(), db.f32(), P(dout), P(inp), P(w), mean.f32(), rstd.f32(), N, C);
    std::vector<float> r;
    for (const Buffer* b : {&dwte, &dwpe, &dinp, &dw, &db}) r.insert(r.end(), b->f32(), b->f32() + b->bytes() / 4);
    r.push_back(float(ops->sum_squares(dout.f32(), N * C)));
    omp_set_num_threads(saved);
    return r;
  };
  const auto one = run(1), three = run(3);
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * 4), 0);
}

}  // namespace
}  // namespace mc
