// The one place that knows which ops backends were built (see CMake's MC_HAVE_CUDA).
#include "core/errors.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#ifdef MC_HAVE_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace mc {

int cuda_device_count() {
#ifdef MC_HAVE_CUDA
  return cuda_device_count_impl();
#else
  return 0;
#endif
}

std::unique_ptr<Ops> make_ops(const std::string& device, int local_rank) {
  if (device == "cpu") return make_cpu_ops();
  if (device == "cuda") {
#ifdef MC_HAVE_CUDA
    if (cuda_device_count_impl() <= 0)
      throw UsageError("--device cuda: no usable CUDA GPU is visible (no driver, or no device); use --device cpu");
    return make_cuda_ops(local_rank);
#else
    (void)local_rank;
    throw UsageError("--device cuda: this minicolossus was built without CUDA (configure with -DMC_CUDA=ON)");
#endif
  }
  throw UsageError("--device: unknown device '" + device + "' (expected cpu or cuda)");
}

}  // namespace mc
