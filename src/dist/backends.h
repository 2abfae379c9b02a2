// Internal to src/dist: the backend constructors comm_factory.cpp calls. Declarations only, free of
// MPI/CUDA types, so every file may include it; a backend's constructor exists only when its
// *_mpi.cpp / *_nccl.cpp was compiled, so callers of those keep to comm_factory.cpp's #ifdefs.
#pragma once
#include <memory>
#include <string>

#include "dist/comm.h"

namespace mc {

class Ops;

// Rank 0 of 1. device_buffers() reports `device_buffers` (collectives never touch the buffer, so a
// single communicator serves device ops as well). Defined in comm_common.cpp.
std::unique_ptr<Communicator> make_single_communicator(bool device_buffers);

// Device buffers staged through host memory to `inner` (a host-buffer communicator) with
// ops.download/upload. `ops` must outlive the communicator. Defined in comm_staged.cpp.
std::unique_ptr<Communicator> make_staged_communicator(std::unique_ptr<Communicator> inner, Ops& ops);

// A duplicate of MPI_COMM_WORLD (MPI must be initialised). Defined in comm_mpi.cpp.
std::unique_ptr<Communicator> make_mpi_world_communicator();

// NCCL over the ranks of `bootstrap` (a host communicator: it broadcasts the unique id, and serves
// barrier, host scalars and abort). Ordered after ops.stream(). Defined in comm_nccl.cpp.
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> bootstrap, Ops& ops);
// Opens libnccl.so.2 (UsageError naming --comm nccl and where it looked when it cannot), and NCCL's
// version as "2.28.9". Defined in nccl_shim_nccl.cpp.
void load_nccl();
std::string nccl_version_string();

// Communicators whose buffers live on a device implement this too, so that the non-virtual
// Communicator::all_reduce_host can reduce a host scalar (see comm_common.cpp).
class HostScalarReducer {
 public:
  virtual ~HostScalarReducer() = default;
  virtual double reduce_host_scalar(double x, RedOp op) = 0;
};

}  // namespace mc
