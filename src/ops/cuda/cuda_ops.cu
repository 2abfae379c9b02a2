// The CUDA implementation of Ops: bf16 activations on one GPU, every op queued on this object's own
// non-blocking stream (stream()), fp32 parameter gradients / optimizer state (Note [Precision policy]
// in kernels/common.cuh). Only calls returning host values, upload/download, alloc/free and
// synchronize() wait; everything else is stream-ordered. Uses only header-only parts of src/core.
// sum()/sum_squares() also report an invalid cross-entropy target found since the previous read-back
// (Note [Invalid targets] in kernels/bad_target.h).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "bad_target.h"
#include "common.cuh"
#include "core/dtype.h"
#include "core/errors.h"
#include "kernels.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/ops.h"

namespace mc {

int cuda_device_count_impl() {
  int n = 0;  // the stub libcuda returns an error without touching n
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls do not report it
    return 0;
  }
  return n > 0 ? n : 0;
}

namespace {

using kern::bf16;

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt workspace (32 MiB, Hopper's recommendation)

double mib(size_t b) { return double(b) / (1024.0 * 1024.0); }

// The bf16 pointer of an act buffer (null stays null); any other dtype is a caller bug.
bf16* b16(Ptr p, const char* what) {
  if (!p) return nullptr;
  MC_CHECK(p.dt == DType::BF16, "cuda ops: %s must be bf16 (got %s)", what, dtype_name(p.dt));
  return static_cast<bf16*>(p.p);
}

class CudaOps final : public Ops {
 public:
  explicit CudaOps(int device) : device_(device) {
    try {
      CUDA_CHECK(cudaSetDevice(device_));
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      CUBLAS_CHECK(cublasLtCreate(&lt_));
      CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
      // reduce_scratch_doubles() partials, the result, the bad-target record (Note [Invalid targets]).
      CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&reduce_buf_), (kern::reduce_scratch_doubles() + 2) * sizeof(double)));
      CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_result_), 2 * sizeof(double)));
      reset_bad_target();
      CUDA_CHECK(cudaStreamSynchronize(stream_));
    } catch (...) {
      release();
      throw;
    }
    gemm_.lt = lt_;
    gemm_.workspace = workspace_;
    gemm_.workspace_bytes = kWorkspaceBytes;
  }
  ~CudaOps() override { release(); }

  std::string name() const override { return "cuda"; }
  bool on_device() const override { return true; }
  DType act_dtype() const override { return DType::BF16; }
  void* stream() const override { return stream_; }
  size_t device_free_bytes() const override {
    dev();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    return free_b;
  }
  size_t peak_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return peak_;
  }

  // ---- memory ---------------------------------------------------------------------------------
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    dev();
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      size_t held;
      {
        std::lock_guard<std::mutex> lk(mu_);
        held = cur_;
      }
      throw RuntimeError(strfmt("cuda: cannot allocate %.1f MiB on GPU %d (%s): %.1f MiB free of %.1f MiB, "
                                "minicolossus holds %.1f MiB; try a smaller --batch or --seq",
                                mib(bytes), device_, cudaGetErrorString(e), mib(free_b), mib(total_b), mib(held)));
    }
    // Zero-filled, and visible to every stream when alloc returns (allocation is not on a hot path).
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::lock_guard<std::mutex> lk(mu_);
    sizes_[p] = bytes;
    cur_ += bytes;
    if (cur_ > peak_) peak_ = cur_;
    return p;
  }
  // Never throws (called from destructors): waits for queued work that may still use p.
  void free(void* p) override {
    if (!p) return;
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    cudaFree(p);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      cur_ -= it->second;
      sizes_.erase(it);
    }
  }
  void zero(void* p, size_t bytes) override {
    if (!bytes) return;
    dev();
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  }
  void upload(void* dst, const void* host_src, size_t bytes) override {
    if (!bytes) return;
    dev();
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host buffer may be reused once we return
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    dev();
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    dev();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void convert(Ptr dst, Ptr src, size_t n) override {
    if (!n) return;
    dev();
    if (dst.dt == src.dt) {
      copy(dst.p, src.p, n * dtype_size(dst.dt));
    } else if (dst.dt == DType::BF16 && src.dt == DType::F32) {
      kern::convert_f32_to_bf16(static_cast<bf16*>(dst.p), src.f32(), n, stream_);
    } else if (dst.dt == DType::F32 && src.dt == DType::BF16) {
      kern::convert_bf16_to_f32(dst.f32(), static_cast<const bf16*>(src.p), n, stream_);
    } else {
      throw RuntimeError(strfmt("cuda convert: %s -> %s is not supported", dtype_name(src.dt), dtype_name(dst.dt)));
    }
  }
  void synchronize() override {
    dev();
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // ---- GPT-2 ops ------------------------------------------------------------------------------
  void encoder_forward(Ptr out, const int* tokens, Ptr wte, Ptr wpe, int B, int T, int C) override {
    dev();
    kern::encoder_forward(b16(out, "out"), tokens, b16(wte, "wte"), b16(wpe, "wpe"), B, T, C, stream_);
  }
  void encoder_backward(float* dwte, float* dwpe, Ptr dout, const int* tokens, int B, int T, int C) override {
    dev();
    void* s = scratch(kern::encoder_backward_scratch_bytes(B, T));
    kern::encoder_backward(dwte, dwpe, b16(dout, "dout"), tokens, s, B, T, C, stream_);
  }
  void layernorm_forward(Ptr out, float* mean, float* rstd, Ptr inp, Ptr w, Ptr b, int N, int C) override {
    dev();
    kern::layernorm_forward(b16(out, "out"), mean, rstd, b16(inp, "inp"), b16(w, "w"), b16(b, "b"), N, C, stream_);
  }
  void layernorm_backward(Ptr dinp, float* dw, float* db, Ptr dout, Ptr inp, Ptr w, const float* mean,
                          const float* rstd, int N, int C) override {
    dev();
    void* s = scratch(kern::layernorm_backward_scratch_bytes(N, C));
    kern::layernorm_backward(b16(dinp, "dinp"), dw, db, b16(dout, "dout"), b16(inp, "inp"), b16(w, "w"), mean, rstd, s,
                             N, C, stream_);
  }
  void matmul_forward(Ptr out, Ptr inp, Ptr w, Ptr bias, int N, int C, int OC) override {
    dev();
    kern::matmul_forward(b16(out, "out"), b16(inp, "inp"), b16(w, "w"), b16(bias, "bias"), N, C, OC, gemm_, stream_);
  }
  void matmul_backward(Ptr dinp, float* dw, float* dbias, Ptr dout, Ptr inp, Ptr w, int N, int C, int OC) override {
    dev();
    kern::matmul_backward(b16(dinp, "dinp"), dw, dbias, b16(dout, "dout"), b16(inp, "inp"), b16(w, "w"), N, C, OC,
                          gemm_, stream_);
  }
  void gelu_forward(Ptr out, Ptr inp, size_t n) override {
    dev();
    kern::gelu_forward(b16(out, "out"), b16(inp, "inp"), n, stream_);
  }
  void gelu_backward(Ptr dinp, Ptr inp, Ptr dout, size_t n) override {
    dev();
    kern::gelu_backward(b16(dinp, "dinp"), b16(inp, "inp"), b16(dout, "dout"), n, stream_);
  }
  void residual_forward(Ptr out, Ptr a, Ptr b, size_t n) override {
    dev();
    kern::residual_forward(b16(out, "out"), b16(a, "a"), b16(b, "b"), n, stream_);
  }
  void attention_forward(Ptr out, float* lse, Ptr qkv, int B, int T, int C, int NH) override {
    dev();
    kern::attention_forward(b16(out, "out"), lse, b16(qkv, "qkv"), B, T, C, NH, stream_);
  }
  void attention_backward(Ptr dqkv, Ptr dout, Ptr qkv, Ptr out, const float* lse, int B, int T, int C,
                          int NH) override {
    dev();
    void* s = scratch(kern::attention_backward_scratch_bytes(B, T, NH));
    kern::attention_backward(b16(dqkv, "dqkv"), b16(dout, "dout"), b16(qkv, "qkv"), b16(out, "out"), lse, s, B, T, C,
                             NH, stream_);
  }
  // The KV cache (Note [Decode attention] in kernels/attention.cu): the caches hold bf16 keys/values.
  bool supports_kv_cache() const override { return true; }
  void attention_decode(Ptr out, Ptr kcache, Ptr vcache, Ptr qkv, int T0, int t, int maxT, int C, int NH) override {
    dev();
    kern::attention_decode(b16(out, "out"), b16(kcache, "kcache"), b16(vcache, "vcache"), b16(qkv, "qkv"), T0, t, maxT,
                           C, NH, stream_);
  }
  void crossentropy(float* losses, Ptr logits, const int* targets, int N, int V, int Vp, float dloss,
                    bool backward) override {
    dev();
    ce_vocab_ = V;  // for the message of Note [Invalid targets]
    kern::crossentropy(losses, b16(logits, "logits"), bad_target_record(), targets, N, V, Vp, dloss, backward, stream_);
  }
  double sum(const float* x, size_t n) override { return reduce(x, n, false); }
  double sum_squares(const float* g, size_t n) override { return reduce(g, n, true); }
  void scale(float* x, float s, size_t n) override {
    dev();
    kern::scale(x, s, n, stream_);
  }
  void adamw(float* master, Ptr param_copy, float* m, float* v, const float* grad, size_t n,
             const AdamWParams& hp) override {
    dev();
    kern::adamw(master, param_copy.p, param_copy.dt, m, v, grad, n, hp, stream_);
  }

 private:
  void dev() const { CUDA_CHECK(cudaSetDevice(device_)); }  // cheap; ops may be called from several threads

  // Note [Scratch]: one growable device buffer for kernels' temporaries (encoder chains, LayerNorm
  // partials, attention's D). Ops run in stream order, so one op's temporaries are dead before the
  // next op starts; growing waits for queued work before freeing the old buffer.
  void* scratch(size_t bytes) {
    if (bytes <= scratch_bytes_) return scratch_;
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (scratch_) CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    scratch_bytes_ = 0;
    const size_t want = bytes < (size_t(1) << 20) ? (size_t(1) << 20) : bytes;
    const cudaError_t e = cudaMalloc(&scratch_, want);
    if (e != cudaSuccess) {
      cudaGetLastError();
      scratch_ = nullptr;
      throw RuntimeError(strfmt("cuda: cannot allocate %.1f MiB of kernel scratch on GPU %d (%s)", mib(want), device_,
                                cudaGetErrorString(e)));
    }
    scratch_bytes_ = want;
    return scratch_;
  }

  // The device word crossentropy records an invalid target into, right after the reduce result.
  unsigned long long* bad_target_record() const {
    return reinterpret_cast<unsigned long long*>(reduce_buf_ + kern::reduce_scratch_doubles() + 1);
  }
  void reset_bad_target() {  // stream-ordered: later kernels see the reset
    CUDA_CHECK(cudaMemsetAsync(bad_target_record(), 0xff, sizeof(unsigned long long), stream_));
  }

  // Note [Invalid targets]: the result and the bad-target record come back in one copy and one wait.
  double reduce(const float* x, size_t n, bool squares) {
    dev();
    const size_t K = kern::reduce_scratch_doubles();
    kern::reduce_sum(reduce_buf_ + K, x, reduce_buf_, n, squares, stream_);
    CUDA_CHECK(cudaMemcpyAsync(host_result_, reduce_buf_ + K, 2 * sizeof(double), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    unsigned long long record;
    std::memcpy(&record, host_result_ + 1, sizeof(record));
    int row = 0, target = 0;
    if (kern::unpack_bad_target(record, &row, &target)) {
      reset_bad_target();  // the ops stay usable after the exception, as the CPU twin's do
      throw RuntimeError(where(__FILE__, __LINE__) + ": check failed: " + kern::bad_target_message(row, target, ce_vocab_) +
                         " (found by the crossentropy kernel; reported at the next sum/sum_squares)");
    }
    return host_result_[0];
  }

  // Frees everything this object created; never throws (used by the destructor and failed construction).
  void release() {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    if (scratch_) cudaFree(scratch_);
    if (reduce_buf_) cudaFree(reduce_buf_);
    if (host_result_) cudaFreeHost(host_result_);
    if (workspace_) cudaFree(workspace_);
    if (lt_) cublasLtDestroy(lt_);
    if (stream_) cudaStreamDestroy(stream_);
    scratch_ = nullptr;
    reduce_buf_ = nullptr;
    host_result_ = nullptr;
    workspace_ = nullptr;
    lt_ = nullptr;
    stream_ = nullptr;
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  kern::GemmContext gemm_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  double* reduce_buf_ = nullptr;   // reduce_scratch_doubles() partials, the result, the bad-target record
  double* host_result_ = nullptr;  // pinned: the result and the bad-target record
  int ce_vocab_ = 0;                // V of the last crossentropy(), for the invalid-target message
  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> sizes_;
  size_t cur_ = 0, peak_ = 0;
};

}  // namespace

std::unique_ptr<Ops> make_cuda_ops(int local_rank) {
  const int n = cuda_device_count_impl();
  if (n <= 0) throw UsageError("--device cuda: no usable CUDA GPU is visible (no driver, or no device)");
  load_cublaslt();
  const int device = (local_rank < 0 ? 0 : local_rank) % n;
  return std::make_unique<CudaOps>(device);
}

}  // namespace mc
