// Fused AdamW over fp32 master weights / moments / gradients; optionally writes the updated weight
// into a compute copy (bf16 or fp32). Same arithmetic, in the same order, as the CPU twin in
// src/ops/cpu/cpu_ops.cpp (grad_scale first, bias corrections as multipliers, decoupled decay).
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

namespace {

template <typename TCopy>
__global__ void adamw_kernel(float* master, TCopy* copy, float* m, float* v, const float* grad, size_t n, float lr,
                             float b1, float b2, float eps, float wd, float gs, float c1, float c2) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = grad[i] * gs;
  const float mi = b1 * m[i] + (1.0f - b1) * g;
  const float vi = b2 * v[i] + (1.0f - b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  const float w = master[i];
  // IEEE-rounded sqrt and division (the build uses --use_fast_math), to match the CPU closely.
  const float upd = __fdiv_rn(mi * c1, __fsqrt_rn(vi * c2) + eps) + wd * w;
  const float nw = w - lr * upd;
  master[i] = nw;
  if (copy) copy[i] = from_f<TCopy>(nw);
}

}  // namespace

void adamw(float* master, void* param_copy, DType copy_dt, float* m, float* v, const float* grad, size_t n,
           const AdamWParams& hp, cudaStream_t stream) {
  if (n == 0) return;
  const float c1 = float(1.0 / (1.0 - std::pow(double(hp.beta1), double(hp.t))));
  const float c2 = float(1.0 / (1.0 - std::pow(double(hp.beta2), double(hp.t))));
  const int threads = 256;
  const int blocks = ceil_div((long long)n, threads);
  if (param_copy == master) param_copy = nullptr;  // fp32 copy aliasing the master: nothing extra to write
  if (!param_copy || copy_dt == DType::F32) {
    adamw_kernel<float><<<blocks, threads, 0, stream>>>(master, static_cast<float*>(param_copy), m, v, grad, n, hp.lr,
                                                        hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale,
                                                        c1, c2);
  } else if (copy_dt == DType::BF16) {
    adamw_kernel<bf16><<<blocks, threads, 0, stream>>>(master, static_cast<bf16*>(param_copy), m, v, grad, n, hp.lr,
                                                       hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale, c1,
                                                       c2);
  } else {
    throw RuntimeError(strfmt("cuda adamw: unsupported param copy dtype %s", dtype_name(copy_dt)));
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
