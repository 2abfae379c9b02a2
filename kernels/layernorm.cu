// LayerNorm over the last dim C (eps 1e-5), bf16 in/out, fp32 statistics and math.
// Forward writes out/mean/rstd ("="); backward ACCUMULATES: dinp += (bf16), dw += and db += (fp32),
// deterministically (Note [LayerNorm backward]).
#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

constexpr float kEps = 1e-5f;

template <int VEC>
__device__ __forceinline__ void store_f(bf16* p, const float* f) {
  if constexpr (VEC == 8) {
    Pack<bf16> x;
#pragma unroll
    for (int i = 0; i < 8; ++i) x.v[i] = from_f<bf16>(f[i]);
    store_pack(p, x);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = from_f<bf16>(f[i]);
  }
}

// One warp per row. Two passes over the row for mean and variance (the row stays in L1).
template <int VEC>
__global__ void layernorm_forward_kernel(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w,
                                         const bf16* b, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const bf16* x = inp + size_t(row) * C;
  float f[VEC];
  float s = 0.f;
  for (int c = lane * VEC; c < C; c += 32 * VEC) {
    load_f<VEC>(f, x + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) s += f[i];
  }
  const float m = warp_sum(s) / float(C);
  float v = 0.f;
  for (int c = lane * VEC; c < C; c += 32 * VEC) {
    load_f<VEC>(f, x + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) v += (f[i] - m) * (f[i] - m);
  }
  const float rs = rsqrtf(warp_sum(v) / float(C) + kEps);
  bf16* o = out + size_t(row) * C;
  float wf[VEC], bf[VEC];
  for (int c = lane * VEC; c < C; c += 32 * VEC) {
    load_f<VEC>(f, x + c);
    load_f<VEC>(wf, w + c);
    load_f<VEC>(bf, b + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) f[i] = (f[i] - m) * rs * wf[i] + bf[i];
    store_f<VEC>(o + c, f);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

// Note [LayerNorm backward]
// With xhat = (x - mean) * rstd and dnorm = dout * w, per row:
//   dinp = rstd * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat))
// and per column: dw = sum_rows(dout * xhat), db = sum_rows(dout).
// dinp is a per-row reduction (one warp per row, layernorm_dinp_kernel). dw/db are column reductions
// done in two fixed-order stages, so that results are bit-reproducible (no atomics):
//   stage 1 (layernorm_dwdb_partial_kernel): R row chunks x column blocks of 32; each block sums its
//     chunk's rows (8 row-lanes, then the 8 lanes in order) into scratch[chunk][0|1][C];
//   stage 2 (layernorm_dwdb_final_kernel): for each column, the R partials in chunk order, then "+=".
// R depends only on N (layernorm_chunks), never on the device.
int layernorm_chunks(int N) { return N < 32 ? 1 : (ceil_div(N, 32) < 128 ? ceil_div(N, 32) : 128); }

template <int VEC>
__global__ void layernorm_dinp_kernel(bf16* dinp, const bf16* dout, const bf16* inp, const bf16* w,
                                      const float* mean, const float* rstd, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const bf16* x = inp + size_t(row) * C;
  const bf16* dy = dout + size_t(row) * C;
  bf16* dx = dinp + size_t(row) * C;
  const float m = mean[row], rs = rstd[row];
  float xf[VEC], df[VEC], wf[VEC], of[VEC];
  float s1 = 0.f, s2 = 0.f;
  for (int c = lane * VEC; c < C; c += 32 * VEC) {
    load_f<VEC>(xf, x + c);
    load_f<VEC>(df, dy + c);
    load_f<VEC>(wf, w + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float dn = df[i] * wf[i];
      s1 += dn;
      s2 += dn * (xf[i] - m) * rs;
    }
  }
  s1 = warp_sum(s1) / float(C);
  s2 = warp_sum(s2) / float(C);
  for (int c = lane * VEC; c < C; c += 32 * VEC) {
    load_f<VEC>(xf, x + c);
    load_f<VEC>(df, dy + c);
    load_f<VEC>(wf, w + c);
    load_f<VEC>(of, dx + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float xh = (xf[i] - m) * rs;
      of[i] += rs * (df[i] * wf[i] - s1 - xh * s2);
    }
    store_f<VEC>(dx + c, of);
  }
}

__global__ void layernorm_dwdb_partial_kernel(float* partial, const bf16* dout, const bf16* inp, const float* mean,
                                              const float* rstd, int N, int C, int rows_per_chunk) {
  __shared__ float sw[8][33], sb[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int chunk = blockIdx.y;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float aw = 0.f, ab = 0.f;
  if (c < C) {
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float d = to_f(dout[size_t(r) * C + c]);
      const float xh = (to_f(inp[size_t(r) * C + c]) - mean[r]) * rstd[r];
      aw += d * xh;
      ab += d;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float tw = 0.f, tb = 0.f;
#pragma unroll
    for (int y = 0; y < 8; ++y) {
      tw += sw[y][threadIdx.x];
      tb += sb[y][threadIdx.x];
    }
    partial[(size_t(chunk) * 2 + 0) * C + c] = tw;
    partial[(size_t(chunk) * 2 + 1) * C + c] = tb;
  }
}

__global__ void layernorm_dwdb_final_kernel(float* dw, float* db, const float* partial, int R, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float tw = 0.f, tb = 0.f;
  for (int k = 0; k < R; ++k) {
    tw += partial[(size_t(k) * 2 + 0) * C + c];
    tb += partial[(size_t(k) * 2 + 1) * C + c];
  }
  dw[c] += tw;
  db[c] += tb;
}

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N,
                       int C, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const bool vec = C % 8 == 0 && is_aligned(out, 16) && is_aligned(inp, 16) && is_aligned(w, 16) && is_aligned(b, 16);
  const int threads = 256, rows_per_block = threads / 32;
  if (vec)
    layernorm_forward_kernel<8><<<ceil_div(N, rows_per_block), threads, 0, stream>>>(out, mean, rstd, inp, w, b, N, C);
  else
    layernorm_forward_kernel<1><<<ceil_div(N, rows_per_block), threads, 0, stream>>>(out, mean, rstd, inp, w, b, N, C);
  CUDA_CHECK_LAUNCH();
}

size_t layernorm_backward_scratch_bytes(int N, int C) { return size_t(layernorm_chunks(N)) * 2 * C * sizeof(float); }

void layernorm_backward(bf16* dinp, float* dw, float* db, const bf16* dout, const bf16* inp, const bf16* w,
                        const float* mean, const float* rstd, void* scratch, int N, int C, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const bool vec = C % 8 == 0 && is_aligned(dinp, 16) && is_aligned(dout, 16) && is_aligned(inp, 16) && is_aligned(w, 16);
  const int threads = 256, rows_per_block = threads / 32;
  if (vec)
    layernorm_dinp_kernel<8><<<ceil_div(N, rows_per_block), threads, 0, stream>>>(dinp, dout, inp, w, mean, rstd, N, C);
  else
    layernorm_dinp_kernel<1><<<ceil_div(N, rows_per_block), threads, 0, stream>>>(dinp, dout, inp, w, mean, rstd, N, C);
  CUDA_CHECK_LAUNCH();
  // Note [LayerNorm backward]: two-stage deterministic dw/db.
  const int R = layernorm_chunks(N);
  const int rows_per_chunk = ceil_div(N, R);
  float* partial = static_cast<float*>(scratch);
  layernorm_dwdb_partial_kernel<<<dim3(ceil_div(C, 32), R), dim3(32, 8), 0, stream>>>(partial, dout, inp, mean, rstd, N,
                                                                                     C, rows_per_chunk);
  CUDA_CHECK_LAUNCH();
  layernorm_dwdb_final_kernel<<<ceil_div(C, 256), 256, 0, stream>>>(dw, db, partial, R, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
