// Shared device helpers of the CUDA ops: check macros, bf16 conversions, 128-bit packed loads and
// stores, warp/block reductions. Header-only; included by every kernels/*.cu and by src/ops/cuda.
// Invariant: device code here never allocates or synchronises; host macros throw mc::RuntimeError.
//
// Precision policy (Note [Precision policy]):
//  - bf16: activations, the compute copy of parameters, activation gradients (the "act" buffers).
//  - fp32: master weights, AdamW moments, parameter gradients, LayerNorm mean/rstd, attention lse,
//    losses, and EVERY reduction (sums, softmax statistics, GEMM accumulation) — values are widened
//    to fp32 on load and rounded to bf16 (nearest even) only on the final store.
//  - fp64: the host-visible scalar reductions (sum, sum_squares) accumulate in double.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/errors.h"

namespace mc {

typedef __nv_bfloat16 bf16;

}  // namespace mc

// Wraps a CUDA runtime call: throws RuntimeError naming rank, file, line and the CUDA error string.
#define CUDA_CHECK(call)                                                                          \
  do {                                                                                            \
    cudaError_t mc_err_ = (call);                                                                 \
    if (mc_err_ != cudaSuccess)                                                                   \
      throw ::mc::RuntimeError(::mc::where(__FILE__, __LINE__) + ": CUDA error " +                \
                               cudaGetErrorName(mc_err_) + " (" + cudaGetErrorString(mc_err_) + \
                               ") in " #call);                                                    \
  } while (0)

// Checks the launch that was just queued (bad configuration, too much shared memory, ...).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Wraps a cuBLAS / cuBLASLt call (needs <cublasLt.h> included before use).
#define CUBLAS_CHECK(call)                                                                      \
  do {                                                                                          \
    cublasStatus_t mc_st_ = (call);                                                             \
    if (mc_st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      throw ::mc::RuntimeError(::mc::where(__FILE__, __LINE__) + ": cuBLAS error " +            \
                               std::to_string(int(mc_st_)) + " (" + cublasLtGetStatusString(mc_st_) + \
                               ") in " #call);                                                  \
  } while (0)

namespace mc {

inline int ceil_div(long long a, long long b) { return int((a + b - 1) / b); }

// True if p is aligned to `bytes` (a power of two).
inline bool is_aligned(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

// ---- scalar conversions ---------------------------------------------------------------------
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }

// ---- 128-bit packs --------------------------------------------------------------------------
// Pack<T>: 16 bytes of T (8 bf16 or 4 float), loaded/stored with one 128-bit access. The address
// must be 16-byte aligned; launchers check alignment on the host and fall back to scalar paths.
template <typename T>
struct alignas(16) Pack {
  static constexpr int N = 16 / int(sizeof(T));
  T v[N];
};
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
  Pack<T> r;
  *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
  return r;
}

// Loads VEC consecutive bf16 as floats (VEC == 8 needs a 16-byte aligned address).
template <int VEC>
__device__ __forceinline__ void load_f(float* f, const bf16* p) {
  if constexpr (VEC == 8) {
    Pack<bf16> x = load_pack(p);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = to_f(x.v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) f[i] = to_f(p[i]);
  }
}
template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& r) {
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&r);
}

// ---- reductions ------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Deterministic: fixed shuffle tree, then warp partials summed in warp order. `shared` holds >= 32 T.
// Contains __syncthreads(): every thread of the block must call it.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < nw ? shared[lane] : T(0);
  return warp_sum(r);
}

__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < nw ? shared[lane] : -INFINITY;
  return warp_max(r);
}

}  // namespace mc
