// The NCCL functions comm_nccl.cpp calls, forwarded to libnccl.so.2 opened at run time (Note [Run-time
// libraries] in core/dynlib.h), so the binary does not link NCCL and starts where it is missing. Each
// definition has the exact signature of its declaration in <nccl.h>. Invariant: the comm factory calls
// load_nccl() before making an NCCL communicator.
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/dynlib.h"
#include "dist/backends.h"

#define NC(ret, name, params, args) MC_RUNTIME_FORWARD(nccl_library, ret, name, params, args)

NC(ncclResult_t, ncclGetVersion, (int* version), (version))
NC(ncclResult_t, ncclGetUniqueId, (ncclUniqueId * id), (id))
NC(ncclResult_t, ncclCommInitRank, (ncclComm_t * comm, int nranks, ncclUniqueId id, int rank),
   (comm, nranks, id, rank))
NC(ncclResult_t, ncclCommDestroy, (ncclComm_t comm), (comm))
NC(ncclResult_t, ncclCommAbort, (ncclComm_t comm), (comm))
NC(const char*, ncclGetErrorString, (ncclResult_t result), (result))
NC(ncclResult_t, ncclAllReduce,
   (const void* send, void* recv, size_t count, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t comm,
    cudaStream_t stream),
   (send, recv, count, dt, op, comm, stream))
NC(ncclResult_t, ncclReduceScatter,
   (const void* send, void* recv, size_t recvcount, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t comm,
    cudaStream_t stream),
   (send, recv, recvcount, dt, op, comm, stream))
NC(ncclResult_t, ncclAllGather,
   (const void* send, void* recv, size_t sendcount, ncclDataType_t dt, ncclComm_t comm, cudaStream_t stream),
   (send, recv, sendcount, dt, comm, stream))
NC(ncclResult_t, ncclBroadcast,
   (const void* send, void* recv, size_t count, ncclDataType_t dt, int root, ncclComm_t comm, cudaStream_t stream),
   (send, recv, count, dt, root, comm, stream))
NC(ncclResult_t, ncclReduce,
   (const void* send, void* recv, size_t count, ncclDataType_t dt, ncclRedOp_t op, int root, ncclComm_t comm,
    cudaStream_t stream),
   (send, recv, count, dt, op, root, comm, stream))
NC(ncclResult_t, ncclGroupStart, (), ())
NC(ncclResult_t, ncclGroupEnd, (), ())

namespace mc {

void load_nccl() { open_runtime_library(nccl_library(), "--comm nccl"); }

std::string nccl_version_string() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL_VERSION_CODE is major*10000 + minor*100 + patch since 2.9.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

}  // namespace mc
