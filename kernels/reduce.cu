// Reductions and simple fp32 maps: deterministic sum / sum of squares (fp64 accumulation, fixed
// two-pass tree whose shape depends only on n), x *= s, and F32 <-> BF16 conversion ("=").
// reduce_sum writes its result to device memory; the caller copies it back and waits.
#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;

// Pass 1: block b sums the grid-stride elements b*256+tid, b*256+tid + G*256, ... into partial[b].
template <bool kSquares>
__global__ void reduce_partial_kernel(double* partial, const float* x, size_t n) {
  __shared__ double sh[32];
  double acc = 0.0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    acc += kSquares ? v * v : v;
  }
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2: one block sums the G partials in a fixed tree.
__global__ void reduce_final_kernel(double* result, const double* partial, int G) {
  __shared__ double sh[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < G; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) *result = acc;
}

__global__ void scale_kernel(float* x, float s, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void f32_to_bf16_kernel(bf16* dst, const float* src, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float* dst, const bf16* src, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __bfloat162float(src[i]);
}

}  // namespace

size_t reduce_scratch_doubles() { return kReduceMaxBlocks; }

void reduce_sum(double* result, const float* x, double* scratch, size_t n, bool squares, cudaStream_t stream) {
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(double), stream));
    return;
  }
  const long long want = ceil_div((long long)n, kReduceThreads);
  const int G = int(want < kReduceMaxBlocks ? want : kReduceMaxBlocks);  // depends on n only
  if (squares)
    reduce_partial_kernel<true><<<G, kReduceThreads, 0, stream>>>(scratch, x, n);
  else
    reduce_partial_kernel<false><<<G, kReduceThreads, 0, stream>>>(scratch, x, n);
  CUDA_CHECK_LAUNCH();
  reduce_final_kernel<<<1, kReduceThreads, 0, stream>>>(result, scratch, G);
  CUDA_CHECK_LAUNCH();
}

void scale(float* x, float s, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<ceil_div((long long)n, 256), 256, 0, stream>>>(x, s, n);
  CUDA_CHECK_LAUNCH();
}

void convert_f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<ceil_div((long long)n, 256), 256, 0, stream>>>(dst, src, n);
  CUDA_CHECK_LAUNCH();
}

void convert_bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<ceil_div((long long)n, 256), 256, 0, stream>>>(dst, src, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
