// The fp32 CPU reference ops (OpenMP + OpenBLAS). They are the "CPU twins" the CUDA kernels are
// tested against, and the ops of every CPU run. Deterministic: same inputs and thread count give
// bit-identical outputs (no atomics, static schedules), which bit-exact resume relies on.
#pragma once
#include <memory>

#include "ops/ops.h"

namespace mc {
std::unique_ptr<Ops> make_cpu_ops();
}
