// The cuBLASLt functions the CUDA ops call, forwarded to libcublasLt.so.13 opened at run time (Note
// [Run-time libraries] in core/dynlib.h), so the binary does not link cuBLASLt. Each definition has the
// exact signature of its declaration in <cublasLt.h> (the compiler checks it). Invariant: make_cuda_ops
// calls load_cublaslt() first, so a missing library is a usage error before any of these runs.
#include <cublasLt.h>

#include "core/dynlib.h"
#include "ops/cuda/cuda_ops.h"

#define LT(ret, name, params, args) MC_RUNTIME_FORWARD(cublaslt_library, ret, name, params, args)

LT(cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * h), (h))
LT(cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t h), (h))
LT(const char*, cublasLtGetStatusString, (cublasStatus_t s), (s))
LT(size_t, cublasLtGetVersion, (void), ())
LT(cublasStatus_t, cublasLtMatmul,
   (cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
    const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc,
    void* D, cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
    cudaStream_t stream),
   (h, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace, workspace_bytes, stream))
LT(cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,
   (cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
    cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t pref, int requested,
    cublasLtMatmulHeuristicResult_t results[], int* returned),
   (h, desc, Adesc, Bdesc, Cdesc, Ddesc, pref, requested, results, returned))
LT(cublasStatus_t, cublasLtMatmulDescCreate,
   (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale), (desc, compute, scale))
LT(cublasStatus_t, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
LT(cublasStatus_t, cublasLtMatmulDescSetAttribute,
   (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf, size_t bytes),
   (desc, attr, buf, bytes))
LT(cublasStatus_t, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref), (pref))
LT(cublasStatus_t, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t pref), (pref))
LT(cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,
   (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void* buf, size_t bytes),
   (pref, attr, buf, bytes))
LT(cublasStatus_t, cublasLtMatrixLayoutCreate,
   (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld),
   (layout, type, rows, cols, ld))
LT(cublasStatus_t, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))

namespace mc {
void load_cublaslt() { open_runtime_library(cublaslt_library(), "--device cuda"); }
}  // namespace mc
