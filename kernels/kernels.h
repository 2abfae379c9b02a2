// Host launchers of the CUDA kernels (one op per kernels/<op>.cu, forward + backward), called by
// src/ops/cuda/cuda_ops.cu. Argument order: outputs, then inputs, then scratch, then sizes, then the
// stream. Every launcher only queues work on `stream` (no synchronisation) and checks the launch.
// Semantics ("=" vs "+=") are exactly those of the Ops interface in src/ops/ops.h.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "ops/ops.h"

namespace mc {
namespace kern {

typedef __nv_bfloat16 bf16;

// ---- encoder.cu ----------------------------------------------------------------------------
void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                     cudaStream_t stream);
// Deterministic (Note [Encoder backward] in encoder.cu); scratch: encoder_backward_scratch_bytes(B, T).
size_t encoder_backward_scratch_bytes(int B, int T);
void encoder_backward(float* dwte, float* dwpe, const bf16* dout, const int* tokens, void* scratch, int B, int T,
                      int C, cudaStream_t stream);

// ---- layernorm.cu --------------------------------------------------------------------------
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N,
                       int C, cudaStream_t stream);
// dinp += ..., dw += ..., db += ... (deterministic two-stage column reduction through scratch).
size_t layernorm_backward_scratch_bytes(int N, int C);
void layernorm_backward(bf16* dinp, float* dw, float* db, const bf16* dout, const bf16* inp, const bf16* w,
                        const float* mean, const float* rstd, void* scratch, int N, int C, cudaStream_t stream);

// ---- matmul.cu (cuBLASLt) ------------------------------------------------------------------
struct GemmContext {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
// out(N,OC) = inp(N,C) @ w(OC,C)^T + bias(OC) (bias may be null).
void matmul_forward(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC,
                    const GemmContext& g, cudaStream_t stream);
// dinp(N,C) = dout @ w ("="; skipped if dinp is null); dw(OC,C) += dout^T @ inp (fp32);
// dbias(OC) += column sums of dout (fp32; skipped if null).
void matmul_backward(bf16* dinp, float* dw, float* dbias, const bf16* dout, const bf16* inp, const bf16* w, int N,
                     int C, int OC, const GemmContext& g, cudaStream_t stream);

// ---- gelu.cu -------------------------------------------------------------------------------
void gelu_forward(bf16* out, const bf16* inp, size_t n, cudaStream_t stream);
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n, cudaStream_t stream);
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t stream);

// ---- attention.cu --------------------------------------------------------------------------
// attention_forward/backward: head size C/NH must be 32, 64 or 128 (throws RuntimeError otherwise).
void attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, cudaStream_t stream);
size_t attention_backward_scratch_bytes(int B, int T, int NH);
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                        void* scratch, int B, int T, int C, int NH, cudaStream_t stream);
// Sampling with a KV cache, one sequence (Ops::attention_decode; Note [Decode attention]): copies the keys
// and values of qkv's t rows (positions T0..T0+t-1) into rows T0.. of kcache/vcache (maxT x C each), then
// out(t,C) = causal attention of those rows over cache rows 0..T0+i. Any head size C/NH; throws
// RuntimeError unless C % NH == 0, T0 >= 0, t > 0 and T0 + t <= maxT.
void attention_decode(bf16* out, bf16* kcache, bf16* vcache, const bf16* qkv, int T0, int t, int maxT, int C, int NH,
                      cudaStream_t stream);

// ---- crossentropy.cu -----------------------------------------------------------------------
// A target outside [0, V) is recorded into *bad_target (device word, atomicMin of pack_bad_target(row,
// target); its loss is NaN): Note [Invalid targets] in bad_target.h.
void crossentropy(float* losses, bf16* logits, unsigned long long* bad_target, const int* targets, int N, int V,
                  int Vp, float dloss, bool backward, cudaStream_t stream);

// ---- adamw.cu ------------------------------------------------------------------------------
// param_copy (may be null) receives the updated master as copy_dt (BF16 or F32).
void adamw(float* master, void* param_copy, DType copy_dt, float* m, float* v, const float* grad, size_t n,
           const AdamWParams& hp, cudaStream_t stream);

// ---- reduce.cu -----------------------------------------------------------------------------
// *result (device double) = sum of x[i] (or x[i]^2), deterministic for a given n.
// scratch holds reduce_scratch_doubles() doubles.
size_t reduce_scratch_doubles();
void reduce_sum(double* result, const float* x, double* scratch, size_t n, bool squares, cudaStream_t stream);
void scale(float* x, float s, size_t n, cudaStream_t stream);
void convert_f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream);
void convert_bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t stream);

}  // namespace kern
}  // namespace mc
