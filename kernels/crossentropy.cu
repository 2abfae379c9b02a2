// Fused softmax + cross-entropy (+ dlogits in place) over logits(N,Vp) bf16, of which the first V
// columns are real. losses[i] ("=", fp32) always; with backward, logits[i] is overwritten by
// (softmax - onehot(target)) * dloss and columns V..Vp-1 by 0. One block per row, fp32 math.
// A target outside [0, V) is recorded in *bad_target (Note [Invalid targets] in bad_target.h).
#include "bad_target.h"
#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

// (m, s) represents sum_i exp(x_i) = s * exp(m). Merging keeps it exact up to rounding.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  s = s * __expf(m - M) + s2 * __expf(m2 - M);
  m = M;
}

template <int VEC>
__global__ void crossentropy_kernel(float* losses, bf16* logits, unsigned long long* bad_target, const int* targets,
                                    int V, int Vp, float dloss, bool backward) {
  __shared__ float sm[32], ss[32];
  const int row = blockIdx.x;
  bf16* x = logits + size_t(row) * Vp;
  const int target = targets[row];
  // Read the target logit before any thread can overwrite the row (pass 2).
  float xt = NAN;
  if (threadIdx.x == 0) {
    if (target >= 0 && target < V)
      xt = to_f(x[target]);
    else
      atomicMin(bad_target, pack_bad_target(row, target));  // the lowest bad row wins
  }

  // Pass 1: per-thread online (max, sum of exp), then merged over the warp and the block (fixed order).
  float m = -INFINITY, s = 0.f;
  for (int c = threadIdx.x * VEC; c < V; c += blockDim.x * VEC) {
    float f[VEC];
    load_f<VEC>(f, x + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      if (c + i >= V) break;
      const float v = f[i];
      if (v > m) {
        s = s * __expf(m - v) + 1.f;
        m = v;
      } else {
        s += __expf(v - m);
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = -INFINITY;
  s = 0.f;
  for (int w = 0; w < nw; ++w) lse_merge(m, s, sm[w], ss[w]);  // every thread, same order
  const float lse = m + __logf(s);
  if (threadIdx.x == 0) losses[row] = lse - xt;  // NaN for an out-of-range target
  if (!backward) return;

  // Pass 2: dlogits in place; padded columns zeroed.
  for (int c = threadIdx.x * VEC; c < Vp; c += blockDim.x * VEC) {
    float f[VEC];
    load_f<VEC>(f, x + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const int col = c + i;
      const float p = col < V ? __expf(f[i] - lse) : 0.f;
      f[i] = col < V ? (p - (col == target ? 1.f : 0.f)) * dloss : 0.f;
    }
    if constexpr (VEC == 8) {
      Pack<bf16> o;
#pragma unroll
      for (int i = 0; i < 8; ++i) o.v[i] = from_f<bf16>(f[i]);
      store_pack(x + c, o);
    } else {
      x[c] = from_f<bf16>(f[0]);
    }
  }
}

}  // namespace

void crossentropy(float* losses, bf16* logits, unsigned long long* bad_target, const int* targets, int N, int V,
                  int Vp, float dloss, bool backward, cudaStream_t stream) {
  if (N == 0) return;
  MC_CHECK(V > 0 && V <= Vp, "crossentropy: V=%d Vp=%d", V, Vp);
  MC_CHECK(bad_target != nullptr, "crossentropy: no bad-target record");
  const int threads = 1024;
  if (Vp % 8 == 0 && is_aligned(logits, 16))
    crossentropy_kernel<8><<<N, threads, 0, stream>>>(losses, logits, bad_target, targets, V, Vp, dloss, backward);
  else
    crossentropy_kernel<1><<<N, threads, 0, stream>>>(losses, logits, bad_target, targets, V, Vp, dloss, backward);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
