// Entry points of the CUDA ops library (mc_cuda), callable from host C++ compiled without nvcc.
// Only declared when built with CUDA (MC_HAVE_CUDA); src/ops/ops_factory.cpp is the one caller.
#pragma once
#include <memory>

#include "ops/ops.h"

namespace mc {
// bf16 ops on GPU local_rank % device count. Throws UsageError if no GPU is usable.
std::unique_ptr<Ops> make_cuda_ops(int local_rank);
// Opens cuBLASLt (throws UsageError naming --device cuda when it cannot be found). Defined in cublaslt_shim.cpp.
void load_cublaslt();
// Visible CUDA devices; 0 when the driver is missing or too old (never throws).
int cuda_device_count_impl();
}
