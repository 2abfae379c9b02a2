// Linear layers through cuBLASLt: bf16 A/B, fp32 accumulation. Forward: bf16 out ("=") with the bf16
// bias fused as a BIAS epilogue. Backward: dinp ("=", bf16), dw ("+=", fp32 C/D with beta = 1) and
// dbias ("+=", fp32, deterministic two-stage column sum). Note [Row-major GEMMs] explains the operands.
#include <map>
#include <mutex>
#include <string>

#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

// Note [Row-major GEMMs]
// Our matrices are row-major; cuBLASLt is column-major. A row-major (R x K) matrix with leading
// dimension K is, byte for byte, the column-major (K x R) matrix — its transpose. So every product
// below is written for the transposed (column-major) views:
//   forward   out(N,OC) = inp(N,C) w(OC,C)^T      <=>  out^T(OC,N) = w^T'(OC,C) inp^T(C,N)
//             A = w   seen as col-major (C x OC), op T  -> (OC x C), lda = C
//             B = inp seen as col-major (C x N),  op N,              ldb = C
//             D = out seen as col-major (OC x N),                    ldd = OC; m=OC n=N k=C.
//             The BIAS epilogue adds a length-m vector to every column of D = bias(OC) to every row of out.
//   dinp(N,C) = dout(N,OC) w(OC,C)                <=>  dinp^T(C,N) = w^T(C,OC) dout^T(OC,N)
//             A = w    as col-major (C x OC), op N, lda = C
//             B = dout as col-major (OC x N), op N, ldb = OC;  D (C x N), ldd = C; m=C n=N k=OC.
//   dw(OC,C) += dout^T(OC,N) inp(N,C)             <=>  dw^T(C,OC) += inp^T(C,N) dout(N,OC)
//             A = inp  as col-major (C x N),  op N, lda = C
//             B = dout as col-major (OC x N), op T -> (N x OC), ldb = OC; C = D = dw (C x OC) fp32,
//             ldd = C, beta = 1; m=C n=OC k=N.

namespace {

// Largest power of two (<= 256) dividing the address: told to the heuristic so that it never picks an
// algorithm needing more alignment than a view into the flat parameter buffer has.
uint32_t alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a & (al - 1))) al >>= 1;
  return al;
}

struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

std::mutex g_algo_mu;
std::map<std::string, cublasLtMatmulAlgo_t> g_algo_cache;  // heuristic answers, by problem description

// D(m,n) = alpha * op(A)(m,k) op(B)(k,n) + beta * D (+ bias(m) per column), column-major; C aliases D.
void lt_gemm(const GemmContext& g, cudaStream_t stream, bool transa, bool transb, int m, int n, int k, const void* A,
             cudaDataType_t atype, int lda, const void* B, cudaDataType_t btype, int ldb, void* D,
             cudaDataType_t dtype, int ldd, float beta, const bf16* bias) {
  LtDescs ds;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&ds.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bt = CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  // Stored shapes (before op): op N -> (m x k); op T -> (k x m) for A, likewise for B.
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ds.a, atype, transa ? k : m, transa ? m : k, lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ds.b, btype, transb ? n : k, transb ? k : n, ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ds.c, dtype, m, n, ldd));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ds.d, dtype, m, n, ldd));

  const uint32_t al_a = alignment_of(A), al_b = alignment_of(B), al_d = alignment_of(D);
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const std::string key = strfmt("%d|%d%d|%d,%d,%d|%d,%d,%d|%d,%d,%d|%u,%u,%u|%d|%zu", dev, int(transa), int(transb), m,
                                 n, k, lda, ldb, ldd, int(atype), int(btype), int(dtype), al_a, al_b, al_d,
                                 bias ? int(alignment_of(bias)) : 0, g.workspace_bytes);
  cublasLtMatmulAlgo_t algo;
  bool have = false;
  {
    std::lock_guard<std::mutex> lk(g_algo_mu);
    auto it = g_algo_cache.find(key);
    if (it != g_algo_cache.end()) {
      algo = it->second;
      have = true;
    }
  }
  if (!have) {
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&ds.pref));
    const uint64_t ws = g.workspace_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(g.lt, ds.op, ds.a, ds.b, ds.c, ds.d, ds.pref, 1, &res, &found));
    if (found == 0)
      throw RuntimeError(strfmt("cuBLASLt has no algorithm for m=%d n=%d k=%d trans=%d%d lda=%d ldb=%d ldd=%d "
                                "align=%u/%u/%u bias=%d",
                                m, n, k, int(transa), int(transb), lda, ldb, ldd, al_a, al_b, al_d, bias ? 1 : 0));
    algo = res.algo;
    std::lock_guard<std::mutex> lk(g_algo_mu);
    g_algo_cache[key] = algo;
  }
  const float alpha = 1.0f;
  CUBLAS_CHECK(cublasLtMatmul(g.lt, ds.op, &alpha, A, ds.a, B, ds.b, &beta, D, ds.c, D, ds.d, &algo, g.workspace,
                              g.workspace_bytes, stream));
}

// dbias two-stage column sum (same scheme as Note [LayerNorm backward]): stage 1 writes
// partial[chunk][OC], stage 2 adds the chunks in order. R depends only on N.
int dbias_chunks(int N) { return N < 32 ? 1 : (ceil_div(N, 32) < 128 ? ceil_div(N, 32) : 128); }

__global__ void dbias_partial_kernel(float* partial, const bf16* dout, int N, int OC, int rows_per_chunk) {
  __shared__ float s[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
  float a = 0.f;
  if (c < OC)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) a += to_f(dout[size_t(r) * OC + c]);
  s[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < OC) {
    float t = 0.f;
#pragma unroll
    for (int y = 0; y < 8; ++y) t += s[y][threadIdx.x];
    partial[size_t(blockIdx.y) * OC + c] = t;
  }
}

__global__ void dbias_final_kernel(float* dbias, const float* partial, int R, int OC) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= OC) return;
  float t = 0.f;
  for (int k = 0; k < R; ++k) t += partial[size_t(k) * OC + c];
  dbias[c] += t;
}

}  // namespace

void matmul_forward(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC,
                    const GemmContext& g, cudaStream_t stream) {
  if (N == 0 || OC == 0) return;
  if (C == 0) {  // empty reduction: out = bias broadcast (never happens in GPT-2; keep it defined)
    throw RuntimeError(strfmt("matmul_forward: C must be positive (N=%d C=%d OC=%d)", N, C, OC));
  }
  // Note [Row-major GEMMs]: out^T(OC,N) = w^T'(OC,C) inp^T(C,N).
  lt_gemm(g, stream, /*transa=*/true, /*transb=*/false, OC, N, C, w, CUDA_R_16BF, C, inp, CUDA_R_16BF, C, out,
          CUDA_R_16BF, OC, 0.0f, bias);
}

void matmul_backward(bf16* dinp, float* dw, float* dbias, const bf16* dout, const bf16* inp, const bf16* w, int N,
                     int C, int OC, const GemmContext& g, cudaStream_t stream) {
  if (N == 0 || OC == 0 || C == 0) return;
  // Note [Row-major GEMMs]: dinp^T(C,N) = w^T(C,OC) dout^T(OC,N), bf16 out, "=".
  if (dinp)
    lt_gemm(g, stream, false, false, C, N, OC, w, CUDA_R_16BF, C, dout, CUDA_R_16BF, OC, dinp, CUDA_R_16BF, C, 0.0f,
            nullptr);
  // Note [Row-major GEMMs]: dw^T(C,OC) += inp^T(C,N) dout(N,OC), fp32 C/D, beta = 1.
  if (dw)
    lt_gemm(g, stream, false, true, C, OC, N, inp, CUDA_R_16BF, C, dout, CUDA_R_16BF, OC, dw, CUDA_R_32F, C, 1.0f,
            nullptr);
  if (dbias) {
    // The partials borrow the cuBLASLt workspace: stream order puts this after the GEMMs above.
    int R = dbias_chunks(N);
    if (size_t(R) * OC * sizeof(float) > g.workspace_bytes) R = 1;
    MC_CHECK(size_t(R) * OC * sizeof(float) <= g.workspace_bytes, "dbias partials (%d x %d) exceed the workspace", R,
             OC);
    const int rows_per_chunk = ceil_div(N, R);
    float* partial = static_cast<float*>(g.workspace);
    dbias_partial_kernel<<<dim3(ceil_div(OC, 32), R), dim3(32, 8), 0, stream>>>(partial, dout, N, OC, rows_per_chunk);
    CUDA_CHECK_LAUNCH();
    dbias_final_kernel<<<ceil_div(OC, 256), 256, 0, stream>>>(dbias, partial, R, OC);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace kern
}  // namespace mc
