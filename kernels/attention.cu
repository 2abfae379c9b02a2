// Fused causal multi-head attention (flash-style), forward and backward, bf16 io, fp32 softmax math.
// Tensor cores through WMMA (bf16 16x16x16 fragments, fp32 accumulators); all elementwise work runs on
// tiles in shared memory, so nothing depends on the (unspecified) fragment element layout.
// No T x T matrix ever exists in memory. Forward writes out and lse(B,NH,T) ("="); backward writes
// dqkv ("=") deterministically (no atomics): Note [Flash forward], Note [Flash backward]. Sampling's
// incremental attention over the KV cache is a separate, plain fp32 kernel: Note [Decode attention].
#include <cuda_bf16.h>
#include <mma.h>

#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

namespace wmma = nvcuda::wmma;

// Tile geometry per head size. Query and key tiles are square (BLK x BLK), which makes the causal
// structure simple: query tile i sees key tiles 0..i, the last one (the diagonal) partly masked.
// Leading dimensions are padded (+8 bf16 / +4 fp32) against bank conflicts; every 16-row / 16-column
// fragment pointer stays 32-byte aligned as WMMA requires.
template <int HS>
struct Cfg {
  static_assert(HS == 32 || HS == 64 || HS == 128, "head size");
  static constexpr int BLK = HS == 128 ? 32 : 64;  // keeps the backward's shared memory under 164 KB (A100)
  static constexpr int LDH = HS + 8;   // bf16 tile with HS columns (Q, K, V, dO)
  static constexpr int LDS = BLK + 4;  // fp32 tile with BLK columns (S, dP)
  static constexpr int LDP = BLK + 8;  // bf16 tile with BLK columns (P, dS)
  static constexpr int LDO = HS + 4;   // fp32 tile with HS columns (O, dK, dV, dQ accumulators)
  static constexpr size_t H16 = size_t(BLK) * LDH * 2;  // bytes of one bf16 HS-wide tile
  static constexpr size_t S32 = size_t(BLK) * LDS * 4;
  static constexpr size_t P16 = size_t(BLK) * LDP * 2;
  static constexpr size_t O32 = size_t(BLK) * LDO * 4;
  static constexpr size_t VEC = size_t(BLK) * 4;
};
constexpr int kFwdThreads = 128;  // 4 warps
constexpr int kBwdThreads = 256;  // 8 warps

constexpr size_t round128(size_t x) { return (x + 127) / 128 * 128; }

// Hands out consecutive 128-byte aligned pieces of dynamic shared memory. The host-side byte counts
// (fwd_smem / dkdv_smem / dq_smem) take the same pieces in the same order.
struct Carver {
  unsigned char* p;
  template <typename T>
  __device__ T* take(size_t bytes) {
    T* r = reinterpret_cast<T*>(p);
    p += round128(bytes);
    return r;
  }
};

template <int HS>
constexpr size_t fwd_smem() {
  using G = Cfg<HS>;
  return 3 * round128(G::H16) + round128(G::S32) + round128(G::P16) + round128(G::O32) + 2 * round128(G::VEC);
}
template <int HS>
constexpr size_t dkdv_smem() {
  using G = Cfg<HS>;
  return 4 * round128(G::H16) + 2 * round128(G::S32) + 2 * round128(G::P16) + 2 * round128(G::O32) +
         2 * round128(G::VEC);
}
template <int HS>
constexpr size_t dq_smem() {
  using G = Cfg<HS>;
  return 4 * round128(G::H16) + 2 * round128(G::S32) + round128(G::P16) + round128(G::O32) + 2 * round128(G::VEC);
}

// C(MxN, fp32, row-major, ldc) = [C +] A(MxK) B(KxN), A and B bf16 in shared memory with the given
// WMMA layouts: row_major A(i,k) = A[i*lda + k], col_major A(i,k) = A[i + k*lda] (a transposed view);
// same for B(k,j). 16x16 output tiles are dealt round-robin to the block's warps. Every warp must
// reach it (no early returns); callers __syncthreads() before reading C.
template <int M, int N, int K, typename LA, typename LB>
__device__ __forceinline__ void block_mma(float* Cs, int ldc, const bf16* As, int lda, const bf16* Bs, int ldb,
                                          bool accumulate) {
  static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "tile");
  const int warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  constexpr int TN = N / 16;
  for (int tile = warp; tile < (M / 16) * TN; tile += nw) {
    const int tm = tile / TN, tn = tile % TN;
    float* cp = Cs + tm * 16 * ldc + tn * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (accumulate)
      wmma::load_matrix_sync(acc, cp, ldc, wmma::mem_row_major);
    else
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> b;
      const bf16* ap;
      const bf16* bp;
      if constexpr (std::is_same<LA, wmma::row_major>::value)
        ap = As + tm * 16 * lda + kk * 16;
      else
        ap = As + tm * 16 + kk * 16 * lda;
      if constexpr (std::is_same<LB, wmma::row_major>::value)
        bp = Bs + kk * 16 * ldb + tn * 16;
      else
        bp = Bs + kk * 16 + tn * 16 * ldb;
      wmma::load_matrix_sync(a, ap, lda);
      wmma::load_matrix_sync(b, bp, ldb);
      wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(cp, acc, ldc, wmma::mem_row_major);
  }
}

// dst(ROWS x HS, ld LDH) = rows t0.. of a head slice: src points at element (t = 0, d = 0) of this
// (batch, head) slice, consecutive t are `ld` elements apart. Rows t >= T are zero-filled.
template <int ROWS, int HS, int LDH>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, size_t ld, int t0, int T) {
  constexpr int CH = HS / 8;
  for (int idx = threadIdx.x; idx < ROWS * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * 8, t = t0 + r;
    int4 v = make_int4(0, 0, 0, 0);
    if (t < T) v = *reinterpret_cast<const int4*>(src + size_t(t) * ld + c);
    *reinterpret_cast<int4*>(dst + r * LDH + c) = v;
  }
}

// The fp32 HS-wide tile src (ld LDO) times mul, rounded to bf16, into rows t0.. of a head slice (t < T).
template <int ROWS, int HS, int LDO>
__device__ __forceinline__ void store_tile(bf16* dst, size_t ld, const float* src, float mul, const float* row_mul,
                                           int t0, int T) {
  constexpr int CH = HS / 8;
  for (int idx = threadIdx.x; idx < ROWS * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * 8, t = t0 + r;
    if (t >= T) continue;
    const float f = row_mul ? mul * row_mul[r] : mul;
    Pack<bf16> o;
#pragma unroll
    for (int i = 0; i < 8; ++i) o.v[i] = from_f<bf16>(src[r * LDO + c + i] * f);
    store_pack(dst + size_t(t) * ld + c, o);
  }
}

// Note [Flash forward]
// Block = (query tile qt, batch*head). Q tile stays in shared memory; for key tiles kt = 0..qt:
//   S = Q K^T (tensor cores, fp32) -> scale, causal mask (key > query, or key >= T: -inf)
//   online softmax per row, fp32: m' = max(m, rowmax S), alpha = exp(m - m'), P = exp(S - m'),
//   l' = alpha l + rowsum P, O = alpha O + P V (P rounded to bf16 for the tensor cores, l from fp32).
// Every row sees key 0 in tile 0, so m is finite from the first tile on (alpha = exp(-inf) = 0 there).
// Finally out = O / l and lse = m + log l (of the SCALED scores). Rows t >= T (the last tile's
// padding) compute on zeros and are never stored. Tiles are launched heaviest (largest qt) first.
template <int HS>
__global__ void __launch_bounds__(kFwdThreads) attn_fwd_kernel(bf16* out, float* lse, const bf16* qkv, int T, int C,
                                                               int NH, float scale) {
  using G = Cfg<HS>;
  constexpr int BLK = G::BLK, LDH = G::LDH, LDS = G::LDS, LDP = G::LDP, LDO = G::LDO;
  constexpr int TPR = kFwdThreads / BLK;  // threads per row in the softmax phase (2 or 4, same warp)
  extern __shared__ __align__(128) unsigned char smem[];
  Carver cv{smem};
  bf16* Qs = cv.take<bf16>(G::H16);
  bf16* Ks = cv.take<bf16>(G::H16);
  bf16* Vs = cv.take<bf16>(G::H16);
  float* Ss = cv.take<float>(G::S32);
  bf16* Ps = cv.take<bf16>(G::P16);
  float* Os = cv.take<float>(G::O32);
  float* m_s = cv.take<float>(G::VEC);
  float* l_s = cv.take<float>(G::VEC);

  const int qt = gridDim.x - 1 - blockIdx.x;
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int q0 = qt * BLK;
  const size_t ld3 = size_t(3) * C;
  const bf16* base = qkv + size_t(b) * T * ld3 + size_t(h) * HS;  // q; k at +C, v at +2C

  load_tile<BLK, HS, LDH>(Qs, base, ld3, q0, T);
  for (int i = threadIdx.x; i < BLK * LDO; i += blockDim.x) Os[i] = 0.f;
  for (int i = threadIdx.x; i < BLK; i += blockDim.x) {
    m_s[i] = -INFINITY;
    l_s[i] = 0.f;
  }
  const int r = threadIdx.x / TPR, part = threadIdx.x % TPR;
  const int qi = q0 + r;
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * BLK;
    __syncthreads();  // previous P V finished reading Ks / Vs / Ps
    load_tile<BLK, HS, LDH>(Ks, base + C, ld3, k0, T);
    load_tile<BLK, HS, LDH>(Vs, base + 2 * C, ld3, k0, T);
    __syncthreads();
    block_mma<BLK, BLK, HS, wmma::row_major, wmma::col_major>(Ss, LDS, Qs, LDH, Ks, LDH, false);  // S = Q K^T
    __syncthreads();
    float mx = -INFINITY;
    for (int c = part; c < BLK; c += TPR) {
      const int kj = k0 + c;
      const float s = (kj <= qi && kj < T) ? Ss[r * LDS + c] * scale : -INFINITY;
      Ss[r * LDS + c] = s;
      mx = fmaxf(mx, s);
    }
#pragma unroll
    for (int o = 1; o < TPR; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float m_old = m_s[r], l_old = l_s[r];
    const float m_new = fmaxf(m_old, mx);
    const float alpha = __expf(m_old - m_new);
    float sum = 0.f;
    for (int c = part; c < BLK; c += TPR) {
      const float p = __expf(Ss[r * LDS + c] - m_new);
      Ps[r * LDP + c] = from_f<bf16>(p);
      sum += p;
    }
#pragma unroll
    for (int o = 1; o < TPR; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    for (int d = part; d < HS; d += TPR) Os[r * LDO + d] *= alpha;
    __syncwarp();  // all lanes of this row have read m_s / l_s
    if (part == 0) {
      m_s[r] = m_new;
      l_s[r] = alpha * l_old + sum;
    }
    __syncthreads();
    block_mma<BLK, HS, BLK, wmma::row_major, wmma::row_major>(Os, LDO, Ps, LDP, Vs, LDH, true);  // O += P V
  }
  __syncthreads();
  // out = O / l: reuse m_s's neighbour l_s as 1/l (each row written by its part-0 thread before).
  for (int i = threadIdx.x; i < BLK; i += blockDim.x) {
    const float l = l_s[i];
    if (q0 + i < T) lse[size_t(bh) * T + q0 + i] = m_s[i] + __logf(l);
    l_s[i] = 1.0f / l;
  }
  __syncthreads();
  store_tile<BLK, HS, LDO>(out + size_t(b) * T * C + size_t(h) * HS, size_t(C), Os, 1.0f, l_s, q0, T);
}

// Note [Flash backward]
// With P = exp(scale * Q K^T - lse) (recomputed from the forward's lse, causal-masked),
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D) with D = rowsum(dO * O),  dQ = scale dS K,
//   dK = scale dS^T Q.
// D is computed first (attn_bwd_d_kernel, one warp per (b, t, h) row) into scratch (B,NH,T).
// dK/dV: block = (key tile, b*h), accumulating dK, dV in shared memory over query tiles kt..last.
// dQ: a separate block = (query tile, b*h) recomputes S, dP, dS over key tiles 0..qt and accumulates
// dQ in shared memory. The recomputation (two extra tile GEMMs) buys determinism: no atomics, every
// output element is written once by one block. P and dS are rounded to bf16 for the tensor cores.
__global__ void attn_bwd_d_kernel(float* Dbuf, const bf16* dout, const bf16* out, int B, int T, int C, int NH,
                                  int HS) {
  const size_t row = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= size_t(B) * T * NH) return;
  const int h = int(row % NH);
  const size_t bt = row / NH;
  const int b = int(bt / T), t = int(bt % T);
  const size_t off = bt * C + size_t(h) * HS;
  float s = 0.f;
  for (int d = lane; d < HS; d += 32) s += to_f(dout[off + d]) * to_f(out[off + d]);
  s = warp_sum(s);
  if (lane == 0) Dbuf[(size_t(b) * NH + h) * T + t] = s;
}

template <int HS>
__global__ void __launch_bounds__(kBwdThreads) attn_bwd_dkdv_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                    const float* lse, const float* Dbuf, int T, int C,
                                                                    int NH, float scale) {
  using G = Cfg<HS>;
  constexpr int BLK = G::BLK, LDH = G::LDH, LDS = G::LDS, LDP = G::LDP, LDO = G::LDO;
  extern __shared__ __align__(128) unsigned char smem[];
  Carver cv{smem};
  bf16* Ks = cv.take<bf16>(G::H16);
  bf16* Vs = cv.take<bf16>(G::H16);
  bf16* Qs = cv.take<bf16>(G::H16);
  bf16* dOs = cv.take<bf16>(G::H16);
  float* Ss = cv.take<float>(G::S32);
  float* dPs = cv.take<float>(G::S32);
  bf16* Ps = cv.take<bf16>(G::P16);
  bf16* dSs = cv.take<bf16>(G::P16);
  float* dKs = cv.take<float>(G::O32);
  float* dVs = cv.take<float>(G::O32);
  float* lse_s = cv.take<float>(G::VEC);
  float* D_s = cv.take<float>(G::VEC);

  const int kt = blockIdx.x;  // key tile 0 has the most work: launched first
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int k0 = kt * BLK;
  const size_t ld3 = size_t(3) * C;
  const bf16* base = qkv + size_t(b) * T * ld3 + size_t(h) * HS;
  const bf16* dobase = dout + size_t(b) * T * C + size_t(h) * HS;
  const float* lse_bh = lse + size_t(bh) * T;
  const float* D_bh = Dbuf + size_t(bh) * T;

  load_tile<BLK, HS, LDH>(Ks, base + C, ld3, k0, T);
  load_tile<BLK, HS, LDH>(Vs, base + 2 * C, ld3, k0, T);
  for (int i = threadIdx.x; i < BLK * LDO; i += blockDim.x) {
    dKs[i] = 0.f;
    dVs[i] = 0.f;
  }
  const int n_tiles = (T + BLK - 1) / BLK;
  for (int qt = kt; qt < n_tiles; ++qt) {
    const int q0 = qt * BLK;
    __syncthreads();  // previous iteration's GEMMs finished reading Qs / dOs / Ps / dSs
    load_tile<BLK, HS, LDH>(Qs, base, ld3, q0, T);
    load_tile<BLK, HS, LDH>(dOs, dobase, size_t(C), q0, T);
    for (int i = threadIdx.x; i < BLK; i += blockDim.x) {
      const bool ok = q0 + i < T;
      lse_s[i] = ok ? lse_bh[q0 + i] : 0.f;
      D_s[i] = ok ? D_bh[q0 + i] : 0.f;
    }
    __syncthreads();
    block_mma<BLK, BLK, HS, wmma::row_major, wmma::col_major>(Ss, LDS, Qs, LDH, Ks, LDH, false);   // S = Q K^T
    block_mma<BLK, BLK, HS, wmma::row_major, wmma::col_major>(dPs, LDS, dOs, LDH, Vs, LDH, false); // dP = dO V^T
    __syncthreads();
    for (int i = threadIdx.x; i < BLK * BLK; i += blockDim.x) {
      const int r = i / BLK, c = i % BLK, qi = q0 + r, kj = k0 + c;
      const float p = (qi < T && kj <= qi) ? __expf(Ss[r * LDS + c] * scale - lse_s[r]) : 0.f;
      const float ds = p * (dPs[r * LDS + c] - D_s[r]);
      Ps[r * LDP + c] = from_f<bf16>(p);
      dSs[r * LDP + c] = from_f<bf16>(ds);
    }
    __syncthreads();
    // P^T and dS^T are col_major views of the row-major P / dS tiles.
    block_mma<BLK, HS, BLK, wmma::col_major, wmma::row_major>(dVs, LDO, Ps, LDP, dOs, LDH, true);  // dV += P^T dO
    block_mma<BLK, HS, BLK, wmma::col_major, wmma::row_major>(dKs, LDO, dSs, LDP, Qs, LDH, true);  // dK += dS^T Q
  }
  __syncthreads();
  bf16* dbase = dqkv + size_t(b) * T * ld3 + size_t(h) * HS;
  store_tile<BLK, HS, LDO>(dbase + C, ld3, dKs, scale, nullptr, k0, T);
  store_tile<BLK, HS, LDO>(dbase + 2 * C, ld3, dVs, 1.0f, nullptr, k0, T);
}

template <int HS>
__global__ void __launch_bounds__(kBwdThreads) attn_bwd_dq_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                  const float* lse, const float* Dbuf, int T, int C,
                                                                  int NH, float scale) {
  using G = Cfg<HS>;
  constexpr int BLK = G::BLK, LDH = G::LDH, LDS = G::LDS, LDP = G::LDP, LDO = G::LDO;
  extern __shared__ __align__(128) unsigned char smem[];
  Carver cv{smem};
  bf16* Qs = cv.take<bf16>(G::H16);
  bf16* dOs = cv.take<bf16>(G::H16);
  bf16* Ks = cv.take<bf16>(G::H16);
  bf16* Vs = cv.take<bf16>(G::H16);
  float* Ss = cv.take<float>(G::S32);
  float* dPs = cv.take<float>(G::S32);
  bf16* dSs = cv.take<bf16>(G::P16);
  float* dQs = cv.take<float>(G::O32);
  float* lse_s = cv.take<float>(G::VEC);
  float* D_s = cv.take<float>(G::VEC);

  const int qt = gridDim.x - 1 - blockIdx.x;  // heaviest first
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int q0 = qt * BLK;
  const size_t ld3 = size_t(3) * C;
  const bf16* base = qkv + size_t(b) * T * ld3 + size_t(h) * HS;
  const bf16* dobase = dout + size_t(b) * T * C + size_t(h) * HS;

  load_tile<BLK, HS, LDH>(Qs, base, ld3, q0, T);
  load_tile<BLK, HS, LDH>(dOs, dobase, size_t(C), q0, T);
  for (int i = threadIdx.x; i < BLK; i += blockDim.x) {
    const bool ok = q0 + i < T;
    lse_s[i] = ok ? lse[size_t(bh) * T + q0 + i] : 0.f;
    D_s[i] = ok ? Dbuf[size_t(bh) * T + q0 + i] : 0.f;
  }
  for (int i = threadIdx.x; i < BLK * LDO; i += blockDim.x) dQs[i] = 0.f;
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * BLK;
    __syncthreads();  // previous dQ GEMM finished reading Ks / dSs
    load_tile<BLK, HS, LDH>(Ks, base + C, ld3, k0, T);
    load_tile<BLK, HS, LDH>(Vs, base + 2 * C, ld3, k0, T);
    __syncthreads();
    block_mma<BLK, BLK, HS, wmma::row_major, wmma::col_major>(Ss, LDS, Qs, LDH, Ks, LDH, false);   // S = Q K^T
    block_mma<BLK, BLK, HS, wmma::row_major, wmma::col_major>(dPs, LDS, dOs, LDH, Vs, LDH, false); // dP = dO V^T
    __syncthreads();
    for (int i = threadIdx.x; i < BLK * BLK; i += blockDim.x) {
      const int r = i / BLK, c = i % BLK, qi = q0 + r, kj = k0 + c;
      const float p = (qi < T && kj <= qi) ? __expf(Ss[r * LDS + c] * scale - lse_s[r]) : 0.f;
      dSs[r * LDP + c] = from_f<bf16>(p * (dPs[r * LDS + c] - D_s[r]));
    }
    __syncthreads();
    block_mma<BLK, HS, BLK, wmma::row_major, wmma::row_major>(dQs, LDO, dSs, LDP, Ks, LDH, true);  // dQ += dS K
  }
  __syncthreads();
  store_tile<BLK, HS, LDO>(dqkv + size_t(b) * T * ld3 + size_t(h) * HS, ld3, dQs, scale, nullptr, q0, T);
}

// Note [Decode attention]
// attention_decode (sampling with the KV cache, Note [KV cache] in src/model/gpt2.cpp): t new query
// rows of one sequence at positions T0..T0+t-1, attending over the cache. Their keys and values are
// first copied into the cache rows T0..T0+t-1 (two strided copies on the stream), then one block per
// (new row i, head h) computes, with every value widened to fp32:
//   s_j = scale * q . k_j for the keys j = 0..T0+i, out = sum_j softmax(s)_j v_j, rounded to bf16 once.
// Any head size works (no tensor cores, scalar loads, so no alignment or divisibility needs) and so does
// any cache length: the keys are taken in chunks of kDecChunk with a running max m and sum l, as in
// Note [Flash forward] (m' = max(m, chunk max), alpha = exp(m - m'), l' = alpha l + sum_chunk exp(s - m'),
// o' = alpha o + sum_chunk exp(s - m') v), so shared memory is fixed by hs alone: q and the o
// accumulator (hs floats each), one chunk of scores (kDecChunk floats) and 32 floats for reductions.
// Unlike the flash forward, P is never rounded to bf16: the only bf16 rounding is the final store.
// Speed is secondary: one token of d12 is 12 blocks of at most 1024 keys x 64 channels per layer.
constexpr int kDecThreads = 128;  // 4 warps
constexpr int kDecChunk = 1024;   // keys per chunk (4 KB of scores)

size_t decode_smem(int hs) { return (2 * size_t(hs) + kDecChunk + 32) * sizeof(float); }

__global__ void __launch_bounds__(kDecThreads) attn_decode_kernel(bf16* out, const bf16* kcache, const bf16* vcache,
                                                                  const bf16* qkv, int T0, int C, int hs, float scale) {
  extern __shared__ __align__(16) float dec_smem[];
  float* q_s = dec_smem;          // hs: the query, fp32
  float* o_s = q_s + hs;          // hs: unnormalised output; element d only ever touched by thread d % blockDim
  float* p_s = o_s + hs;          // kDecChunk: one chunk's scaled scores, then their exponentials
  float* red = p_s + kDecChunk;   // 32: block_max / block_sum scratch
  const int i = blockIdx.x, h = blockIdx.y;
  const int nk = T0 + i + 1;  // causal: keys 0..T0+i (all in the cache by now)
  const size_t hoff = size_t(h) * hs;
  const bf16* q = qkv + size_t(i) * 3 * size_t(C) + hoff;
  const bf16* kh = kcache + hoff;  // key j of this head at kh + j * C
  const bf16* vh = vcache + hoff;
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    q_s[d] = to_f(q[d]);
    o_s[d] = 0.f;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float m = -INFINITY, l = 0.f;  // running max and sum; every thread holds the same values
  for (int c0 = 0; c0 < nk; c0 += kDecChunk) {
    const int n = min(kDecChunk, nk - c0);
    __syncthreads();  // q_s is written (first chunk); the previous chunk's p_s is fully read
    // Scores: one warp per key, lanes over the channels, a fixed shuffle tree (deterministic).
    for (int j = warp; j < n; j += nw) {
      const bf16* kj = kh + size_t(c0 + j) * C;
      float s = 0.f;
      for (int d = lane; d < hs; d += 32) s += q_s[d] * to_f(kj[d]);
      s = warp_sum(s);
      if (lane == 0) p_s[j] = s * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, p_s[j]);
    mx = block_max(mx, red);
    const float m_new = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.f : __expf(m - m_new);  // first chunk: nothing to rescale
    float sum = 0.f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      const float p = __expf(p_s[j] - m_new);
      p_s[j] = p;
      sum += p;
    }
    sum = block_sum(sum, red);  // its barriers also publish every p_s[j] written above
    __syncthreads();
    l = alpha * l + sum;
    m = m_new;
    // o = alpha o + P V: thread d walks the chunk's keys (reads of V row j are coalesced over d).
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
      float acc = o_s[d] * alpha;
      for (int j = 0; j < n; ++j) acc += p_s[j] * to_f(vh[size_t(c0 + j) * C + d]);
      o_s[d] = acc;
    }
  }
  const float inv = 1.0f / l;  // l >= 1: the row's largest score contributes exp(0)
  bf16* o = out + size_t(i) * C + hoff;
  for (int d = threadIdx.x; d < hs; d += blockDim.x) o[d] = from_f<bf16>(o_s[d] * inv);
}

int head_size(int C, int NH) {
  if (NH <= 0 || C % NH != 0) throw RuntimeError(strfmt("attention: C=%d is not divisible by NH=%d", C, NH));
  const int hs = C / NH;
  if (hs != 32 && hs != 64 && hs != 128)
    throw RuntimeError(strfmt("attention: head size C/NH = %d/%d = %d is not supported by the CUDA kernels "
                              "(32, 64 or 128)", C, NH, hs));
  return hs;
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int HS>
void fwd_launch(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, cudaStream_t stream) {
  constexpr size_t smem = fwd_smem<HS>();
  allow_smem(attn_fwd_kernel<HS>, smem);
  const dim3 grid(ceil_div(T, Cfg<HS>::BLK), B * NH);
  attn_fwd_kernel<HS><<<grid, kFwdThreads, smem, stream>>>(out, lse, qkv, T, C, NH, 1.0f / sqrtf(float(HS)));
  CUDA_CHECK_LAUNCH();
}

template <int HS>
void bwd_launch(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse, const float* D, int B, int T, int C,
                int NH, cudaStream_t stream) {
  const float scale = 1.0f / sqrtf(float(HS));
  const dim3 grid(ceil_div(T, Cfg<HS>::BLK), B * NH);
  constexpr size_t s1 = dkdv_smem<HS>(), s2 = dq_smem<HS>();
  allow_smem(attn_bwd_dkdv_kernel<HS>, s1);
  attn_bwd_dkdv_kernel<HS><<<grid, kBwdThreads, s1, stream>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale);
  CUDA_CHECK_LAUNCH();
  allow_smem(attn_bwd_dq_kernel<HS>, s2);
  attn_bwd_dq_kernel<HS><<<grid, kBwdThreads, s2, stream>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale);
  CUDA_CHECK_LAUNCH();
}

void check_aligned(const void* p, const char* what) {
  if (!is_aligned(p, 16)) throw RuntimeError(strfmt("attention: %s is not 16-byte aligned", what));
}

}  // namespace

void attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, cudaStream_t stream) {
  const int hs = head_size(C, NH);
  if (B == 0 || T == 0) return;
  check_aligned(out, "out");
  check_aligned(qkv, "qkv");
  MC_CHECK(B * NH <= 65535, "attention grid: B*NH = %d", B * NH);
  switch (hs) {
    case 32: fwd_launch<32>(out, lse, qkv, B, T, C, NH, stream); break;
    case 64: fwd_launch<64>(out, lse, qkv, B, T, C, NH, stream); break;
    default: fwd_launch<128>(out, lse, qkv, B, T, C, NH, stream); break;
  }
}

size_t attention_backward_scratch_bytes(int B, int T, int NH) { return size_t(B) * NH * T * sizeof(float); }

void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                        void* scratch, int B, int T, int C, int NH, cudaStream_t stream) {
  const int hs = head_size(C, NH);
  if (B == 0 || T == 0) return;
  check_aligned(dqkv, "dqkv");
  check_aligned(dout, "dout");
  check_aligned(qkv, "qkv");
  MC_CHECK(B * NH <= 65535, "attention grid: B*NH = %d", B * NH);
  float* D = static_cast<float*>(scratch);
  const size_t rows = size_t(B) * T * NH;
  attn_bwd_d_kernel<<<ceil_div((long long)rows * 32, 256), 256, 0, stream>>>(D, dout, out, B, T, C, NH, hs);
  CUDA_CHECK_LAUNCH();
  switch (hs) {
    case 32: bwd_launch<32>(dqkv, dout, qkv, lse, D, B, T, C, NH, stream); break;
    case 64: bwd_launch<64>(dqkv, dout, qkv, lse, D, B, T, C, NH, stream); break;
    default: bwd_launch<128>(dqkv, dout, qkv, lse, D, B, T, C, NH, stream); break;
  }
}

void attention_decode(bf16* out, bf16* kcache, bf16* vcache, const bf16* qkv, int T0, int t, int maxT, int C, int NH,
                      cudaStream_t stream) {
  if (NH <= 0 || C <= 0 || C % NH != 0)
    throw RuntimeError(strfmt("attention_decode: C=%d is not divisible by NH=%d", C, NH));
  if (T0 < 0 || t <= 0 || int64_t(T0) + t > maxT)
    throw RuntimeError(strfmt("attention_decode: T0=%d t=%d maxT=%d (needs T0 >= 0, t > 0, T0 + t <= maxT)", T0, t,
                              maxT));
  MC_CHECK(NH <= 65535, "attention_decode grid: NH = %d", NH);
  const int hs = C / NH;
  const size_t smem = decode_smem(hs);
  if (smem > 48 * 1024) {  // past the default limit: opt in, as far as the device allows
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (smem > size_t(optin))
      throw RuntimeError(strfmt("attention_decode: head size %d needs %zu bytes of shared memory (device limit %d)",
                                hs, smem, optin));
    allow_smem(attn_decode_kernel, smem);
  }
  // Nothing was queued before this point, so a refused call leaves the cache as it was.
  // The new rows' keys and values into cache rows T0..T0+t-1 (row pitch C there, 3C in qkv), queued
  // before the kernel that reads them.
  const size_t row = size_t(C) * sizeof(bf16);
  CUDA_CHECK(cudaMemcpy2DAsync(kcache + size_t(T0) * C, row, qkv + C, 3 * row, row, size_t(t),
                               cudaMemcpyDeviceToDevice, stream));
  CUDA_CHECK(cudaMemcpy2DAsync(vcache + size_t(T0) * C, row, qkv + 2 * size_t(C), 3 * row, row, size_t(t),
                               cudaMemcpyDeviceToDevice, stream));
  const dim3 grid(static_cast<unsigned>(t), static_cast<unsigned>(NH));  // x: new rows, y: heads
  attn_decode_kernel<<<grid, kDecThreads, smem, stream>>>(out, kcache, vcache, qkv, T0, C, hs, 1.0f / sqrtf(float(hs)));
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
