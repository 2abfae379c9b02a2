// The Ops interface: every numeric operation the GPT-2 forward/backward and the optimizer need.
// Implementations: src/ops/cpu (fp32 reference, OpenMP + OpenBLAS) and src/ops/cuda (bf16, CUDA).
// Invariants every implementation keeps (the model relies on them):
//  - Buffers come from alloc() and live where the backend computes (host for cpu, device for cuda).
//  - "Act" buffers (Ptr) hold act_dtype() elements: activations and the compute copy of parameters.
//    Gradients of parameters, optimizer state, master weights and LayerNorm/attention statistics are
//    always fp32 (float*).
//  - Backward ops write activation gradients with "=" unless noted "+="; parameter gradients are
//    always accumulated with "+=" (so gradient accumulation over micro-steps is free).
//  - Launch order is stream order: an implementation may run asynchronously, and only the calls
//    returning host values (or synchronize()) wait for the work queued before them.
//  - Argument order: outputs, then inputs, then sizes. B batch, T time, C channels, NH heads,
//    V vocab, Vp padded vocab, N = B*T rows, OC output channels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/errors.h"

namespace mc {

// A typed pointer into backend memory. at(i) advances by i elements of its dtype.
struct Ptr {
  void* p = nullptr;
  DType dt = DType::F32;
  Ptr() = default;
  Ptr(void* p_, DType dt_) : p(p_), dt(dt_) {}
  Ptr at(size_t i) const { return Ptr(static_cast<char*>(p) + i * dtype_size(dt), dt); }
  explicit operator bool() const { return p != nullptr; }
  float* f32() const { return static_cast<float*>(p); }
};

// Hyper-parameters of one AdamW update (decoupled weight decay, bias-corrected moments).
struct AdamWParams {
  float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0;
  float grad_scale = 1;  // multiplies the gradient first (gradient clipping)
  int t = 1;             // 1-based step count, for bias correction
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;      // "cpu" or "cuda"
  virtual bool on_device() const = 0;        // buffers are GPU memory
  virtual DType act_dtype() const = 0;       // F32 on cpu, BF16 on cuda

  // ---- memory -----------------------------------------------------------------------------
  virtual void* alloc(size_t bytes) = 0;  // zero-filled; throws RuntimeError when out of memory
  virtual void free(void* p) = 0;
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // backend to backend
  // dst[i] = src[i] converted between dtypes (F32 <-> BF16, or same type), both backend buffers.
  virtual void convert(Ptr dst, Ptr src, size_t n) = 0;
  virtual void synchronize() = 0;
  // The stream (cudaStream_t) the ops run on, for communicators that must order against it; null on cpu.
  virtual void* stream() const { return nullptr; }
  // Largest number of bytes held through alloc() at once so far (0 if not tracked).
  virtual size_t peak_bytes() const { return 0; }
  // Free memory of the device the ops allocate on (cudaMemGetInfo); 0 for host ops (see the trainer's
  // check_memory for host memory).
  virtual size_t device_free_bytes() const { return 0; }

  // ---- GPT-2 ops ----------------------------------------------------------------------------
  // out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. tokens: backend int32 buffer of B*T.
  virtual void encoder_forward(Ptr out, const int* tokens, Ptr wte, Ptr wpe, int B, int T, int C) = 0;
  // dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:].
  virtual void encoder_backward(float* dwte, float* dwpe, Ptr dout, const int* tokens, int B, int T,
                                int C) = 0;

  // out = (inp - mean) * rstd * w + b over the last dim C; mean/rstd (N floats) saved for backward.
  virtual void layernorm_forward(Ptr out, float* mean, float* rstd, Ptr inp, Ptr w, Ptr b, int N,
                                 int C) = 0;
  // dinp += ...; dw += ...; db += ... (dinp accumulates: it is the residual stream's gradient).
  virtual void layernorm_backward(Ptr dinp, float* dw, float* db, Ptr dout, Ptr inp, Ptr w,
                                  const float* mean, const float* rstd, int N, int C) = 0;

  // out(N,OC) = inp(N,C) @ w(OC,C)^T + bias(OC); bias may be null.
  virtual void matmul_forward(Ptr out, Ptr inp, Ptr w, Ptr bias, int N, int C, int OC) = 0;
  // dinp(N,C) = dout @ w; dw(OC,C) += dout^T @ inp; dbias(OC) += sum_rows(dout) (dbias may be null).
  virtual void matmul_backward(Ptr dinp, float* dw, float* dbias, Ptr dout, Ptr inp, Ptr w, int N, int C,
                               int OC) = 0;

  // tanh-approximation GELU. gelu_backward: dinp = gelu'(inp) * dout.
  virtual void gelu_forward(Ptr out, Ptr inp, size_t n) = 0;
  virtual void gelu_backward(Ptr dinp, Ptr inp, Ptr dout, size_t n) = 0;
  // out = a + b.
  virtual void residual_forward(Ptr out, Ptr a, Ptr b, size_t n) = 0;

  // Causal multi-head attention. qkv(B,T,3C) holds [q | k | v], each C = NH heads * hs.
  // out(B,T,C) = softmax(q k^T / sqrt(hs), causal) v per head; lse(B,NH,T) = log-sum-exp of the
  // scaled scores of each query row (fp32), which backward uses to recompute probabilities.
  virtual void attention_forward(Ptr out, float* lse, Ptr qkv, int B, int T, int C, int NH) = 0;
  // dqkv = gradient w.r.t. qkv ("="), from dout, the forward's inputs and outputs and lse.
  virtual void attention_backward(Ptr dqkv, Ptr dout, Ptr qkv, Ptr out, const float* lse, int B, int T,
                                  int C, int NH) = 0;

  // Incremental attention for sampling with a KV cache (Note [KV cache] in src/model/gpt2.cpp), one
  // sequence: qkv(t,3C) holds the rows of positions T0..T0+t-1. Their keys and values are first
  // written into kcache/vcache (maxT x C each, row = position), then out(t,C) receives row i of
  // causal attention of query i over the cached positions 0..T0+i, with the same numerics as
  // attention_forward (scale 1/sqrt(hs), softmax with max subtraction). Needs T0 + t <= maxT.
  // Backends without it keep the default (supports_kv_cache() false; the call throws), and sampling
  // then recomputes the whole context.
  virtual bool supports_kv_cache() const { return false; }
  virtual void attention_decode(Ptr out, Ptr kcache, Ptr vcache, Ptr qkv, int T0, int t, int maxT, int C,
                                int NH) {
    (void)out, (void)kcache, (void)vcache, (void)qkv, (void)T0, (void)t, (void)maxT, (void)C, (void)NH;
    throw RuntimeError(name() + " ops: attention_decode (KV cache) is not implemented");
  }

  // Softmax cross-entropy over logits(N,Vp) of which the first V columns are real.
  // losses[i] = -log softmax(logits[i])[targets[i]] (fp32, N values).
  // If backward: logits is overwritten with dlogits = (softmax - onehot(target)) * dloss, and the
  // padded columns V..Vp-1 with 0. targets: backend int32 buffer of N.
  virtual void crossentropy(float* losses, Ptr logits, const int* targets, int N, int V, int Vp,
                            float dloss, bool backward) = 0;

  // Sum of losses[0..n) as a host double (waits for queued work).
  virtual double sum(const float* x, size_t n) = 0;
  // Sum of squares of g[0..n) as a host double (waits for queued work). fp32 gradients.
  virtual double sum_squares(const float* g, size_t n) = 0;
  // x *= s (fp32).
  virtual void scale(float* x, float s, size_t n) = 0;

  // One AdamW step over n elements: master/m/v/grad are fp32; if param_copy is non-null it receives
  // the updated master converted to its dtype (the bf16 compute copy on cuda).
  virtual void adamw(float* master, Ptr param_copy, float* m, float* v, const float* grad, size_t n,
                     const AdamWParams& hp) = 0;
};

// Creates the ops for "cpu" or "cuda" (throws UsageError if that device is not available, naming
// --device). local_rank picks the GPU (local_rank % device count). Defined in ops_factory.cpp.
std::unique_ptr<Ops> make_ops(const std::string& device, int local_rank);

// Number of CUDA devices visible (0 without a driver, or when built without CUDA).
int cuda_device_count();

// RAII buffer from an Ops.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Ops& ops, size_t bytes) : ops_(&ops), p_(bytes ? ops.alloc(bytes) : nullptr), bytes_(bytes) {}
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : ops_(o.ops_), p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; o.bytes_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) { reset(); ops_ = o.ops_; p_ = o.p_; bytes_ = o.bytes_; o.p_ = nullptr; o.bytes_ = 0; }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void reset() {
    if (p_ && ops_) ops_->free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return p_; }
  float* f32() const { return static_cast<float*>(p_); }
  int* i32() const { return static_cast<int*>(p_); }
  Ptr ptr(DType dt) const { return Ptr(p_, dt); }
  size_t bytes() const { return bytes_; }

 private:
  Ops* ops_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace mc
