// The fp32 CPU ops: GEMMs through OpenBLAS (cblas_sgemm), everything else OpenMP loops with static
// schedules and no atomics. Invariant: same inputs and thread count give bit-identical outputs;
// parameter gradients accumulate (+=), activation gradients are written (=) except layernorm's dinp.
#include "ops/cpu/cpu_ops.h"

#include <cblas.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/errors.h"

namespace mc {
namespace {

// ---- helpers --------------------------------------------------------------------------------

// The float* behind an activation Ptr (the cpu backend computes in fp32 only); null stays null.
inline float* F(Ptr p) {
  MC_CHECK(!p.p || p.dt == DType::F32, "cpu ops take fp32 activations, got %s", dtype_name(p.dt));
  return p.f32();
}

// Note [Vectorisable exp]
// glibc's expf/tanhf are not vectorised without -ffast-math, and the softmax of the 50k-wide
// classifier plus GELU over N*4C elements would then cost a large fraction of a CPU step. This exp
// is plain arithmetic that GCC vectorises inside `omp simd` loops: x = n*ln2 + r with |r| <= ln2/2
// (Cody-Waite split of ln2), a degree-7 Taylor polynomial for e^r (truncation < 1e-8 relative),
// and 2^n built in the exponent bits. Accuracy is within ~2 ulp; NaN propagates; results for
// x < -87.3 are 0 and for x > 88.3 saturate at e^88.3 (~2e38), which softmax and GELU never reach
// meaningfully. It is deterministic (no data-dependent code paths).
// The clamp is written so that NaN also lands inside [lo, hi] (every comparison with NaN is false,
// so `x > lo ? ... : lo` sends it to lo): n is then always in [-126, 128] and the exponent bits
// (n + 127) << 23 never come from a float-to-int conversion of NaN or +-inf (undefined behaviour,
// and on x86 INT_MIN, a negative value shifted left). The NaN itself is put back at the end.
#pragma omp declare simd notinbranch
inline float vexp(float x) {
  const float lo = -87.3f, hi = 88.3f;
  const float xc = x > lo ? (x < hi ? x : hi) : lo;  // NaN -> lo (then restored below)
  const float shifter = 12582912.0f;                  // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = uint32_t(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  const float e = p * scale;
  return x != x ? x : (x < lo ? 0.0f : e);
}

}  // namespace

// The vectorised exp above, callable from tests (declared there; not part of any interface).
float cpu_vexp_for_test(float x) { return vexp(x); }

namespace {

// Runs fn(c0, c1) on disjoint channel ranges covering [0, C), one range per OpenMP thread.
// Each thread then loops over all rows in order, so every output channel is summed in row order:
// the result does not depend on the thread count (used for dw/db/dbias/encoder reductions).
template <class Fn>
void for_channel_ranges(int C, Fn fn) {
#pragma omp parallel
  {
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    // ranges are multiples of 16 floats (one cache line) so threads never share a line
    const int blocks = (C + 15) / 16;
    const int b0 = int(int64_t(blocks) * tid / nth), b1 = int(int64_t(blocks) * (tid + 1) / nth);
    const int c0 = std::min(C, b0 * 16), c1 = std::min(C, b1 * 16);
    if (c0 < c1) fn(c0, c1);
  }
}

// x[i] = sqrt(x[i]) with vector instructions where available (see Note [AdamW sqrt]).
inline void sqrt_inplace(float* x, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

constexpr size_t kAlign = 64;
constexpr size_t kHeader = 64;  // each allocation is preceded by a 64-byte header holding its size
constexpr size_t kParallelBytes = size_t(1) << 20;  // memset/memcpy above this run multi-threaded

void par_memset0(void* p, size_t bytes) {
  if (bytes < kParallelBytes) {
    std::memset(p, 0, bytes);
    return;
  }
  const size_t chunk = size_t(1) << 18;
  const int64_t nchunks = int64_t((bytes + chunk - 1) / chunk);
  char* c = static_cast<char*>(p);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nchunks; ++i) std::memset(c + i * chunk, 0, std::min(chunk, bytes - i * chunk));
}

void par_memcpy(void* dst, const void* src, size_t bytes) {
  if (dst == src || bytes == 0) return;
  if (bytes < kParallelBytes) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t chunk = size_t(1) << 18;
  const int64_t nchunks = int64_t((bytes + chunk - 1) / chunk);
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nchunks; ++i) std::memcpy(d + i * chunk, s + i * chunk, std::min(chunk, bytes - i * chunk));
}

// ---- the ops ----------------------------------------------------------------------------------

// Note [OpenMP wait policy]
// OpenMP ops and OpenBLAS GEMMs alternate all through a step. With libgomp's default wait policy an
// OpenMP worker keeps spinning for several milliseconds after each parallel region, i.e. during the
// GEMM that follows, and takes a core from OpenBLAS's own worker: on 2 cores a GEMM preceded by a
// tiny OpenMP op runs at about half speed, and a GPT-2 124M step (B=4, T=64) takes ~2.3 s instead
// of ~1.25 s. libgomp reads OMP_WAIT_POLICY only when it loads, so this file cannot change it;
// the process should start with OMP_WAIT_POLICY=PASSIVE (set by the launcher, or by main re-executing
// itself once with it set). Results are bit-identical either way.

class CpuOps final : public Ops {
 public:
  CpuOps() {
    // OpenBLAS (pthread build) keeps its own pool; match it to the OpenMP thread count once so that
    // e.g. OMP_NUM_THREADS=1 under mpirun does not leave BLAS oversubscribing the cores.
    const int want = omp_get_max_threads();
    if (openblas_get_num_threads() != want) openblas_set_num_threads(want);
  }
  ~CpuOps() override = default;

  std::string name() const override { return "cpu"; }
  bool on_device() const override { return false; }
  DType act_dtype() const override { return DType::F32; }

  // ---- memory ----------------------------------------------------------------------------------
  void* alloc(size_t bytes) override {
    const size_t total = (kHeader + bytes + kAlign - 1) / kAlign * kAlign;
    if (total < bytes) throw RuntimeError(strfmt("cpu alloc: size overflow (%zu bytes)", bytes));
    char* base = static_cast<char*>(std::aligned_alloc(kAlign, total));
    if (!base) throw RuntimeError(strfmt("cpu alloc: out of host memory allocating %zu bytes", bytes));
    std::memcpy(base, &bytes, sizeof(bytes));
    char* p = base + kHeader;
    par_memset0(p, bytes);
    {
      std::lock_guard<std::mutex> g(mu_);
      cur_ += bytes;
      peak_ = std::max(peak_, cur_);
    }
    return p;
  }
  void free(void* p) override {
    if (!p) return;
    char* base = static_cast<char*>(p) - kHeader;
    size_t bytes;
    std::memcpy(&bytes, base, sizeof(bytes));
    {
      std::lock_guard<std::mutex> g(mu_);
      cur_ -= bytes;
    }
    std::free(base);
  }
  size_t peak_bytes() const override {
    std::lock_guard<std::mutex> g(mu_);
    return peak_;
  }
  void zero(void* p, size_t bytes) override { par_memset0(p, bytes); }
  void upload(void* dst, const void* src, size_t bytes) override { par_memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { par_memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { par_memcpy(dst, src, bytes); }
  void synchronize() override {}

  void convert(Ptr dst, Ptr src, size_t n) override {
    if (dst.dt == src.dt) {
      par_memcpy(dst.p, src.p, n * dtype_size(dst.dt));
    } else if (dst.dt == DType::BF16 && src.dt == DType::F32) {
      uint16_t* d = static_cast<uint16_t*>(dst.p);
      const float* s = src.f32();
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    } else if (dst.dt == DType::F32 && src.dt == DType::BF16) {
      float* d = dst.f32();
      const uint16_t* s = static_cast<const uint16_t*>(src.p);
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    } else {
      throw RuntimeError(strfmt("cpu convert: unsupported %s -> %s", dtype_name(src.dt), dtype_name(dst.dt)));
    }
  }

  // ---- encoder ---------------------------------------------------------------------------------
  void encoder_forward(Ptr out_, const int* tokens, Ptr wte_, Ptr wpe_, int B, int T, int C) override {
    float* out = F(out_);
    const float* wte = F(wte_);
    const float* wpe = F(wpe_);
    const int64_t N = int64_t(B) * T;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* o = out + n * C;
      const float* we = wte + int64_t(tokens[n]) * C;
      const float* pe = wpe + (n % T) * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) o[c] = we[c] + pe[c];
    }
  }

  // Parallel over channels (not tokens): a repeated token adds into the same dwte row, so splitting
  // tokens across threads would race; splitting channels keeps every sum in token order.
  void encoder_backward(float* dwte, float* dwpe, Ptr dout_, const int* tokens, int B, int T, int C) override {
    const float* dout = F(dout_);
    const int64_t N = int64_t(B) * T;
    for_channel_ranges(C, [&](int c0, int c1) {
      for (int64_t n = 0; n < N; ++n) {
        const float* d = dout + n * C;
        float* we = dwte + int64_t(tokens[n]) * C;
        float* pe = dwpe + (n % T) * C;
#pragma omp simd
        for (int c = c0; c < c1; ++c) {
          we[c] += d[c];
          pe[c] += d[c];
        }
      }
    });
  }

  // ---- layernorm -------------------------------------------------------------------------------
  void layernorm_forward(Ptr out_, float* mean, float* rstd, Ptr inp_, Ptr w_, Ptr b_, int N, int C) override {
    float* out = F(out_);
    const float* inp = F(inp_);
    const float* w = F(w_);
    const float* b = F(b_);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = inp + int64_t(n) * C;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int c = 0; c < C; ++c) s += x[c];
      const float m = s / float(C);
      float v = 0;
#pragma omp simd reduction(+ : v)
      for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
      const float rs = 1.0f / std::sqrt(v / float(C) + 1e-5f);
      float* o = out + int64_t(n) * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * rs * w[c] + b[c];
      mean[n] = m;
      rstd[n] = rs;
    }
  }

  // With xhat = (x - mean) * rstd and g = w * dout:
  //   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dw = sum_rows dout * xhat,  db = sum_rows dout.
  // Phase 1 (rows in parallel) does dx; phase 2 (channels in parallel) does dw/db deterministically.
  void layernorm_backward(Ptr dinp_, float* dw, float* db, Ptr dout_, Ptr inp_, Ptr w_, const float* mean,
                          const float* rstd, int N, int C) override {
    float* dinp = F(dinp_);
    const float* dout = F(dout_);
    const float* inp = F(inp_);
    const float* w = F(w_);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = inp + int64_t(n) * C;
      const float* d = dout + int64_t(n) * C;
      const float m = mean[n], rs = rstd[n];
      float sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
      for (int c = 0; c < C; ++c) {
        const float g = w[c] * d[c];
        sg += g;
        sgx += g * (x[c] - m) * rs;
      }
      const float mg = sg / float(C), mgx = sgx / float(C);
      float* dx = dinp + int64_t(n) * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * rs;
        dx[c] += rs * (w[c] * d[c] - mg - xhat * mgx);
      }
    }
    for_channel_ranges(C, [&](int c0, int c1) {
      for (int n = 0; n < N; ++n) {
        const float* x = inp + int64_t(n) * C;
        const float* d = dout + int64_t(n) * C;
        const float m = mean[n], rs = rstd[n];
#pragma omp simd
        for (int c = c0; c < c1; ++c) {
          dw[c] += d[c] * (x[c] - m) * rs;
          db[c] += d[c];
        }
      }
    });
  }

  // ---- matmul ----------------------------------------------------------------------------------
  // Row-major throughout: out(N,OC) = inp(N,C) * w(OC,C)^T. The bias is written into out first and
  // the GEMM then accumulates (beta = 1), so there is no second pass over out.
  void matmul_forward(Ptr out_, Ptr inp_, Ptr w_, Ptr bias_, int N, int C, int OC) override {
    float* out = F(out_);
    const float* inp = F(inp_);
    const float* w = F(w_);
    const float* bias = F(bias_);
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
      for (int n = 0; n < N; ++n) std::memcpy(out + int64_t(n) * OC, bias, size_t(OC) * sizeof(float));
      beta = 1.0f;
    }
    // One row (sampling with the KV cache): OpenBLAS 0.3.21's sgemm still packs w for it, which makes
    // it 5-10x slower than sgemv on GPT-2's shapes. out(OC) = w(OC,C) inp(C).
    if (N == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, w, C, inp, 1, beta, out, 1);
      return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, beta, out, OC);
  }

  void matmul_backward(Ptr dinp_, float* dw, float* dbias, Ptr dout_, Ptr inp_, Ptr w_, int N, int C,
                       int OC) override {
    float* dinp = F(dinp_);
    const float* dout = F(dout_);
    const float* inp = F(inp_);
    const float* w = F(w_);
    // dinp(N,C) = dout(N,OC) * w(OC,C)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, 0.0f, dinp, C);
    // dw(OC,C) += dout^T(OC,N) * inp(N,C)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (dbias) {
      for_channel_ranges(OC, [&](int o0, int o1) {
        for (int n = 0; n < N; ++n) {
          const float* d = dout + int64_t(n) * OC;
#pragma omp simd
          for (int o = o0; o < o1; ++o) dbias[o] += d[o];
        }
      });
    }
  }

  // ---- elementwise -----------------------------------------------------------------------------
  // GELU(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Since 0.5 (1 + tanh u) equals
  // sigmoid(2u) exactly, we evaluate x * sigmoid(2u) with the vectorisable exp (Note [Vectorisable exp]).
  // Derivative: s + 2 x s (1 - s) u'(x), with s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
  static constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/pi)
  static constexpr float kGeluA = 0.044715f;

  void gelu_forward(Ptr out_, Ptr inp_, size_t n) override {
    float* out = F(out_);
    const float* inp = F(inp_);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float u = kGeluK * (x + kGeluA * x * x * x);
      out[i] = x / (1.0f + vexp(-2.0f * u));
    }
  }

  void gelu_backward(Ptr dinp_, Ptr inp_, Ptr dout_, size_t n) override {
    float* dinp = F(dinp_);
    const float* inp = F(inp_);
    const float* dout = F(dout_);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float u = kGeluK * (x + kGeluA * x * x * x);
      const float s = 1.0f / (1.0f + vexp(-2.0f * u));
      const float du = kGeluK * (1.0f + 3.0f * kGeluA * x * x);
      dinp[i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
    }
  }

  void residual_forward(Ptr out_, Ptr a_, Ptr b_, size_t n) override {
    float* out = F(out_);
    const float* a = F(a_);
    const float* b = F(b_);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }

  // ---- attention -------------------------------------------------------------------------------
  // One task per (b, h); each task touches only its head's channel slices, so tasks never share
  // output memory. Per thread, the scratch holds the head's keys (and for backward values)
  // transposed to (hs, T), so the scores of one query against all keys are a vectorised axpy over
  // keys rather than T short dot products; plus score rows of length T. Never a T x T matrix.

  // kt[d*T + j] = src[j*C3 + d] for j < T, d < hs (one head's keys or values, transposed).
  static void gather_transposed(float* kt, const float* src, int T, int hs, int64_t C3) {
    for (int j = 0; j < T; ++j)
      for (int d = 0; d < hs; ++d) kt[int64_t(d) * T + j] = src[j * C3 + d];
  }
  // s[j] = sum_d a[d] * mt[d*T + j] for j <= i (a query against keys, or dout against values).
  static void scores_row(float* s, const float* a, const float* mt, int i, int T, int hs) {
    for (int j = 0; j <= i; ++j) s[j] = 0;
    for (int d = 0; d < hs; ++d) {
      const float ad = a[d];
      const float* row = mt + int64_t(d) * T;
#pragma omp simd
      for (int j = 0; j <= i; ++j) s[j] += ad * row[j];
    }
  }

  // One query row of one head: o(hs) = softmax(scale * q . k_j, j <= i) weighted sum of v_j, where the
  // keys are kt (transposed, row stride T) and value j is at v + j * vstride. Returns the row's
  // log-sum-exp. att is scratch of >= i + 1 floats. attention_forward and attention_decode both call
  // this, so a cached row is computed with exactly the same operations as the full-context row.
  static float attend_row(float* o, float* att, const float* q, const float* kt, const float* v, int64_t vstride,
                          int i, int T, int hs, float scale) {
    scores_row(att, q, kt, i, T, hs);
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j <= i; ++j) mx = std::max(mx, att[j]);
    mx *= scale;  // scale > 0, so the max commutes with scaling
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= i; ++j) {
      const float e = vexp(att[j] * scale - mx);
      att[j] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < hs; ++d) o[d] = 0;
    for (int j = 0; j <= i; ++j) {
      const float* vj = v + j * vstride;
      const float p = att[j] * inv;
#pragma omp simd
      for (int d = 0; d < hs; ++d) o[d] += p * vj[d];
    }
    return mx + std::log(sum);
  }

  void attention_forward(Ptr out_, float* lse, Ptr qkv_, int B, int T, int C, int NH) override {
    float* out = F(out_);
    const float* qkv = F(qkv_);
    MC_CHECK(C % NH == 0, "attention: C=%d not divisible by NH=%d", C, NH);
    const int hs = C / NH;
    const int64_t C3 = 3 * int64_t(C);
    const float scale = 1.0f / std::sqrt(float(hs));
#pragma omp parallel
    {
      std::vector<float> att(static_cast<size_t>(T)), kt(size_t(T) * size_t(hs));
#pragma omp for schedule(static) collapse(2)
      for (int b = 0; b < B; ++b) {
        for (int h = 0; h < NH; ++h) {
          const float* base = qkv + int64_t(b) * T * C3 + int64_t(h) * hs;
          gather_transposed(kt.data(), base + C, T, hs, C3);
          for (int i = 0; i < T; ++i) {
            float* o = out + (int64_t(b) * T + i) * C + int64_t(h) * hs;
            lse[(int64_t(b) * NH + h) * T + i] =
                attend_row(o, att.data(), base + i * C3, kt.data(), base + 2 * C, C3, i, T, hs, scale);
          }
        }
      }
    }
  }

  bool supports_kv_cache() const override { return true; }

  // Appends the new rows' keys and values to the cache, then attends each new query over the cache.
  // One task per head (the rows of a head share its transposed keys).
  void attention_decode(Ptr out_, Ptr kcache_, Ptr vcache_, Ptr qkv_, int T0, int t, int maxT, int C,
                        int NH) override {
    float* out = F(out_);
    float* kc = F(kcache_);
    float* vc = F(vcache_);
    const float* qkv = F(qkv_);
    MC_CHECK(NH > 0 && C % NH == 0, "attention: C=%d not divisible by NH=%d", C, NH);
    MC_CHECK(T0 >= 0 && t > 0 && int64_t(T0) + t <= maxT, "attention_decode: T0=%d t=%d maxT=%d", T0, t, maxT);
    const int hs = C / NH, Tk = T0 + t;
    const int64_t C3 = 3 * int64_t(C);
    const float scale = 1.0f / std::sqrt(float(hs));
    for (int i = 0; i < t; ++i) {
      std::memcpy(kc + (int64_t(T0) + i) * C, qkv + i * C3 + C, size_t(C) * sizeof(float));
      std::memcpy(vc + (int64_t(T0) + i) * C, qkv + i * C3 + 2 * C, size_t(C) * sizeof(float));
    }
#pragma omp parallel
    {
      std::vector<float> att(static_cast<size_t>(Tk)), kt(size_t(Tk) * size_t(hs));
#pragma omp for schedule(static)
      for (int h = 0; h < NH; ++h) {
        gather_transposed(kt.data(), kc + int64_t(h) * hs, Tk, hs, C);
        for (int i = 0; i < t; ++i)
          attend_row(out + int64_t(i) * C + int64_t(h) * hs, att.data(), qkv + i * C3 + int64_t(h) * hs, kt.data(),
                     vc + int64_t(h) * hs, C, T0 + i, Tk, hs, scale);
      }
    }
  }

  // For query i of one head, with p_j = exp(s_ij - lse_i), dP_j = dout_i . v_j, D_i = dout_i . out_i:
  //   dS_j = p_j (dP_j - D_i);  dq_i = scale sum_j dS_j k_j;  dk_j += scale dS_j q_i;  dv_j += p_j dout_i.
  // (D_i = sum_j p_j dP_j because out_i = sum_j p_j v_j.)
  void attention_backward(Ptr dqkv_, Ptr dout_, Ptr qkv_, Ptr out_, const float* lse, int B, int T, int C,
                          int NH) override {
    float* dqkv = F(dqkv_);
    const float* dout = F(dout_);
    const float* qkv = F(qkv_);
    const float* out = F(out_);
    MC_CHECK(C % NH == 0, "attention: C=%d not divisible by NH=%d", C, NH);
    const int hs = C / NH;
    const int64_t C3 = 3 * int64_t(C);
    const float scale = 1.0f / std::sqrt(float(hs));
#pragma omp parallel
    {
      std::vector<float> s(static_cast<size_t>(T)), dp(static_cast<size_t>(T)), kt(size_t(T) * size_t(hs)),
          vt(size_t(T) * size_t(hs));
#pragma omp for schedule(static) collapse(2)
      for (int b = 0; b < B; ++b) {
        for (int h = 0; h < NH; ++h) {
          const int64_t off = int64_t(b) * T * C3 + int64_t(h) * hs;
          const float* base = qkv + off;
          float* dbase = dqkv + off;
          gather_transposed(kt.data(), base + C, T, hs, C3);
          gather_transposed(vt.data(), base + 2 * C, T, hs, C3);
          // "=" semantics: clear this head's q, k and v slices for every t (the tasks tile dqkv)
          for (int t = 0; t < T; ++t)
            for (int part = 0; part < 3; ++part)
              std::memset(dbase + t * C3 + part * C, 0, size_t(hs) * sizeof(float));
          for (int i = 0; i < T; ++i) {
            const float* q = base + i * C3;
            float* dq = dbase + i * C3;
            const float* go = dout + (int64_t(b) * T + i) * C + int64_t(h) * hs;
            const float* o = out + (int64_t(b) * T + i) * C + int64_t(h) * hs;
            const float L = lse[(int64_t(b) * NH + h) * T + i];
            float D = 0;
#pragma omp simd reduction(+ : D)
            for (int d = 0; d < hs; ++d) D += go[d] * o[d];
            scores_row(s.data(), q, kt.data(), i, T, hs);
            scores_row(dp.data(), go, vt.data(), i, T, hs);
            // s[j] <- p_j, dp[j] <- scale * dS_j
#pragma omp simd
            for (int j = 0; j <= i; ++j) {
              const float p = vexp(s[j] * scale - L);
              s[j] = p;
              dp[j] = p * (dp[j] - D) * scale;
            }
            for (int j = 0; j <= i; ++j) {
              const float* k = base + j * C3 + C;
              float* dk = dbase + j * C3 + C;
              float* dv = dbase + j * C3 + 2 * C;
              const float ds = dp[j], p = s[j];
#pragma omp simd
              for (int d = 0; d < hs; ++d) {
                dq[d] += ds * k[d];
                dk[d] += ds * q[d];
                dv[d] += p * go[d];
              }
            }
          }
        }
      }
    }
  }

  // ---- loss --------------------------------------------------------------------------------------
  void crossentropy(float* losses, Ptr logits_, const int* targets, int N, int V, int Vp, float dloss,
                    bool backward) override {
    float* logits = F(logits_);
    for (int i = 0; i < N; ++i)
      MC_CHECK(targets[i] >= 0 && targets[i] < V, "crossentropy: target %d at row %d outside [0, %d)", targets[i],
               i, V);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; ++i) {
      float* x = logits + int64_t(i) * Vp;
      const float xt = x[targets[i]];
      float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int j = 0; j < V; ++j) mx = std::max(mx, x[j]);
      float sum = 0;
      if (backward) {
        // keep the exps in place; the scaling pass below turns them into dlogits
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; ++j) {
          const float e = vexp(x[j] - mx);
          x[j] = e;
          sum += e;
        }
      } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; ++j) sum += vexp(x[j] - mx);
      }
      losses[i] = mx + std::log(sum) - xt;
      if (backward) {
        const float f = dloss / sum;
#pragma omp simd
        for (int j = 0; j < V; ++j) x[j] *= f;
        x[targets[i]] -= dloss;
        for (int j = V; j < Vp; ++j) x[j] = 0;
      }
    }
  }

  // ---- reductions and the optimizer ------------------------------------------------------------
  // Fixed chunks of kChunk elements summed in double, then the chunk sums added in order: the result
  // is the same for any thread count.
  static constexpr size_t kChunk = 8192;

  template <bool kSquare>
  static double chunked_sum(const float* x, size_t n) {
    const int64_t nchunks = int64_t((n + kChunk - 1) / kChunk);
    std::vector<double> part(size_t(nchunks), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      const size_t lo = size_t(c) * kChunk, hi = std::min(n, lo + kChunk);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (size_t i = lo; i < hi; ++i) {
        const double v = x[i];
        s += kSquare ? v * v : v;
      }
      part[size_t(c)] = s;
    }
    double total = 0;
    for (double p : part) total += p;
    return total;
  }
  double sum(const float* x, size_t n) override { return chunked_sum<false>(x, n); }
  double sum_squares(const float* g, size_t n) override { return chunked_sum<true>(g, n); }

  void scale(float* x, float s, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) x[i] *= s;
  }

  // Note [AdamW sqrt]: GCC will not vectorise std::sqrt without -fno-math-errno (it keeps a scalar
  // errno branch), and the optimizer streams ~3.5 GB per step for GPT-2 124M, so the update runs in
  // L1-sized chunks: moments first (vectorised), then an explicit vector sqrt (IEEE-exact, the same
  // result as std::sqrt), then the parameter update.
  template <int kCopy>  // 0: no copy, 1: fp32 copy, 2: bf16 copy
  static void adamw_impl(float* master, void* copy, float* m, float* v, const float* grad, size_t n,
                         const AdamWParams& hp) {
    const float b1 = hp.beta1, b2 = hp.beta2, lr = hp.lr, eps = hp.eps, wd = hp.weight_decay, gs = hp.grad_scale;
    const float c1 = float(1.0 / (1.0 - std::pow(double(b1), double(hp.t))));  // 1 / bias corrections
    const float c2 = float(1.0 / (1.0 - std::pow(double(b2), double(hp.t))));
    constexpr size_t kBlock = 2048;
    const int64_t nblocks = int64_t((n + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const size_t lo = size_t(blk) * kBlock, len = std::min(kBlock, n - lo);
      alignas(64) float den[kBlock];
      float* M = m + lo;
      float* Vv = v + lo;
      const float* G = grad + lo;
#pragma omp simd
      for (size_t i = 0; i < len; ++i) {
        const float g = G[i] * gs;
        const float mi = b1 * M[i] + (1.0f - b1) * g;
        const float vi = b2 * Vv[i] + (1.0f - b2) * g * g;
        M[i] = mi;
        Vv[i] = vi;
        den[i] = vi * c2;  // vhat
      }
      sqrt_inplace(den, len);
      float* W = master + lo;
#pragma omp simd
      for (size_t i = 0; i < len; ++i) {
        const float w = W[i] - lr * ((M[i] * c1) / (den[i] + eps) + wd * W[i]);
        W[i] = w;
        if constexpr (kCopy == 1) static_cast<float*>(copy)[lo + i] = w;
        if constexpr (kCopy == 2) static_cast<uint16_t*>(copy)[lo + i] = f32_to_bf16(w);
      }
    }
  }

  void adamw(float* master, Ptr param_copy, float* m, float* v, const float* grad, size_t n,
             const AdamWParams& hp) override {
    if (!param_copy || (param_copy.dt == DType::F32 && param_copy.p == master))
      adamw_impl<0>(master, nullptr, m, v, grad, n, hp);
    else if (param_copy.dt == DType::F32)
      adamw_impl<1>(master, param_copy.p, m, v, grad, n, hp);
    else if (param_copy.dt == DType::BF16)
      adamw_impl<2>(master, param_copy.p, m, v, grad, n, hp);
    else
      throw RuntimeError(strfmt("cpu adamw: unsupported param copy dtype %s", dtype_name(param_copy.dt)));
  }

 private:
  mutable std::mutex mu_;
  size_t cur_ = 0, peak_ = 0;
};

}  // namespace

std::unique_ptr<Ops> make_cpu_ops() { return std::make_unique<CpuOps>(); }

}  // namespace mc
