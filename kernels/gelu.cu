// Elementwise bf16 ops: tanh-approximation GELU forward/backward ("=") and the residual add ("=").
// fp32 math, one rounding per output. 128-bit accesses when every pointer is 16-byte aligned, with a
// scalar tail; otherwise a scalar kernel.
#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

__device__ __forceinline__ float gelu_f(float x) {
  const float u = kSqrt2OverPi * (x + kGeluA * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
// d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'(x), u' = sqrt(2/pi)(1 + 3a x^2).
__device__ __forceinline__ float gelu_grad_f(float x) {
  const float u = kSqrt2OverPi * (x + kGeluA * x * x * x);
  const float th = tanhf(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluA * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

struct GeluFwd {
  __device__ float operator()(float x, float) const { return gelu_f(x); }
};
struct GeluBwd {
  __device__ float operator()(float x, float dy) const { return gelu_grad_f(x) * dy; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// out[i] = f(a[i], b[i]) (b may be null for unary ops: then 0 is passed). Thread handles VEC elements.
template <int VEC, typename F>
__global__ void elementwise_kernel(bf16* out, const bf16* a, const bf16* b, size_t n, F f) {
  const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (i >= n) return;
  if (VEC == 8 && i + 8 <= n) {
    Pack<bf16> x = load_pack(a + i), r;
    Pack<bf16> y;
    if (b) y = load_pack(b + i);
#pragma unroll
    for (int k = 0; k < 8; ++k) r.v[k] = from_f<bf16>(f(to_f(x.v[k]), b ? to_f(y.v[k]) : 0.f));
    store_pack(out + i, r);
  } else {
    const size_t e = i + VEC < n ? i + VEC : n;
    for (size_t j = i; j < e; ++j) out[j] = from_f<bf16>(f(to_f(a[j]), b ? to_f(b[j]) : 0.f));
  }
}

template <typename F>
void launch_elementwise(bf16* out, const bf16* a, const bf16* b, size_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const bool vec = is_aligned(out, 16) && is_aligned(a, 16) && (!b || is_aligned(b, 16));
  if (vec)
    elementwise_kernel<8><<<ceil_div((long long)ceil_div((long long)n, 8), threads), threads, 0, stream>>>(out, a, b, n, f);
  else
    elementwise_kernel<1><<<ceil_div((long long)n, threads), threads, 0, stream>>>(out, a, b, n, f);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void gelu_forward(bf16* out, const bf16* inp, size_t n, cudaStream_t stream) {
  launch_elementwise(out, inp, nullptr, n, GeluFwd(), stream);
}
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n, cudaStream_t stream) {
  launch_elementwise(dinp, inp, dout, n, GeluBwd(), stream);
}
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t stream) {
  launch_elementwise(out, a, b, n, Add(), stream);
}

}  // namespace kern
}  // namespace mc
