// The NCCL communicator: device buffers, collectives on its own high-priority CUDA stream, ordered
// after the ops' compute stream (Note [NCCL ordering]). Bootstrapped by a host communicator (mpi), which
// also serves barrier, host scalars and abort. Invariant: one GPU per rank (the factory checks), the
// ops have already made that GPU current, and every rank issues the same collectives in the same order.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "core/errors.h"
#include "dist/backends.h"
#include "dist/comm.h"
#include "ops/ops.h"

#define MC_NCCL_CHECK(call)                                                                                 \
  do {                                                                                                      \
    const ncclResult_t mc_nccl_rc_ = (call);                                                                \
    if (mc_nccl_rc_ != ncclSuccess)                                                                         \
      throw ::mc::RuntimeError(::mc::where(__FILE__, __LINE__) + ": " #call " failed: " +                   \
                               std::string(ncclGetErrorString(mc_nccl_rc_)));                               \
  } while (0)

#define MC_NCCL_CUDA_CHECK(call)                                                                            \
  do {                                                                                                      \
    const cudaError_t mc_cuda_rc_ = (call);                                                                 \
    if (mc_cuda_rc_ != cudaSuccess)                                                                         \
      throw ::mc::RuntimeError(::mc::where(__FILE__, __LINE__) + ": " #call " failed: " +                   \
                               std::string(cudaGetErrorString(mc_cuda_rc_)));                               \
  } while (0)

namespace mc {
namespace {

// Note [NCCL ordering]
// The ops launch their kernels on the compute stream (ops.stream()); NCCL runs on this communicator's
// own non-blocking, high-priority stream so that a bucket's reduction overlaps the backward kernels
// still being launched. An async collective:
//   1. records event `ready` on the compute stream and makes the comm stream wait on it, so the
//      collective reads the buffer only after the kernels that wrote it;
//   2. enqueues the NCCL call on the comm stream (returning at once: the host never blocks here);
//   3. records event `done` on the comm stream.
// wait() makes the compute stream wait on `done` (kernels launched afterwards see the result) AND
// synchronises `done` on the host. The host sync is not strictly needed for device consumers, but the
// contract says the result is in place when wait() returns (a download or a host read may follow on
// another stream), and it keeps the semantics identical to the mpi backend: simple and correct.
// Collectives are enqueued from the caller's thread in issue order on one stream, so they complete in
// issue order and match across ranks. (The mpi backend's worker thread has no counterpart here: the
// CUDA stream is the queue.)

// Note [Uneven segments]
// ncclReduceScatter and ncclAllGather need equal counts per rank. With equal counts they run in place
// (rank r's segment sits at r*count, exactly as NCCL expects). With uneven counts, reduce_scatter is
// one ncclReduce per segment to its owner as root, and all_gather one ncclBroadcast per segment from
// its owner, all fused between ncclGroupStart/End so NCCL schedules them as one operation. Zero-count
// segments are skipped (the same on every rank, since all ranks pass the same counts).

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::BF16: return ncclBfloat16;
  }
  throw RuntimeError("nccl: unknown dtype");
}

ncclRedOp_t nccl_op(RedOp op) {
  switch (op) {
    case RedOp::Sum: return ncclSum;
    case RedOp::Avg: return ncclAvg;
    case RedOp::Max: return ncclMax;
    case RedOp::Min: return ncclMin;
  }
  throw RuntimeError("nccl: unknown reduction");
}

class NcclWork final : public CommWork {
 public:
  NcclWork(cudaEvent_t done, cudaStream_t compute) : done_(done), compute_(compute) {}
  ~NcclWork() override {
    if (done_) cudaEventDestroy(done_);  // released by CUDA once the event has completed
  }
  void wait() override {  // Note [NCCL ordering]
    std::lock_guard<std::mutex> lk(mu_);
    if (waited_) return;
    MC_NCCL_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
    MC_NCCL_CUDA_CHECK(cudaEventSynchronize(done_));
    waited_ = true;
  }

 private:
  std::mutex mu_;
  cudaEvent_t done_;
  cudaStream_t compute_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator, public HostScalarReducer {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> boot, Ops& ops)
      : boot_(std::move(boot)), compute_(static_cast<cudaStream_t>(ops.stream())) {
    MC_CHECK(boot_ && !boot_->device_buffers(), "nccl bootstrap needs a host-buffer communicator");
    ncclUniqueId id;
    if (boot_->rank() == 0) MC_NCCL_CHECK(ncclGetUniqueId(&id));
    static_assert(sizeof(id) % sizeof(int32_t) == 0, "ncclUniqueId size");
    boot_->broadcast(&id, sizeof(id) / sizeof(int32_t), DType::I32, 0);
    int lo = 0, hi = 0;
    MC_NCCL_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    MC_NCCL_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, hi));
    MC_NCCL_CHECK(ncclCommInitRank(&comm_, boot_->size(), id, boot_->rank()));
  }

  ~NcclCommunicator() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return boot_->rank(); }
  int size() const override { return boot_->size(); }
  int local_rank() const override { return boot_->local_rank(); }
  int local_size() const override { return boot_->local_size(); }
  bool device_buffers() const override { return true; }

  CommHandle all_reduce_async(void* buf, size_t count, DType dt, RedOp op) override {
    begin();
    MC_NCCL_CHECK(ncclAllReduce(buf, buf, count, nccl_type(dt), nccl_op(op), comm_, stream_));
    return end();
  }

  CommHandle reduce_scatter_async(void* buf, const std::vector<size_t>& counts, DType dt, RedOp op) override {
    MC_CHECK(counts.size() == size_t(size()), "reduce_scatter: %zu counts for %d ranks", counts.size(), size());
    const std::vector<size_t> off = segment_offsets(counts);
    const size_t esz = dtype_size(dt);
    char* base = static_cast<char*>(buf);
    begin();
    if (equal(counts)) {
      MC_NCCL_CHECK(ncclReduceScatter(base, base + off[size_t(rank())] * esz, counts[0], nccl_type(dt), nccl_op(op),
                                      comm_, stream_));
    } else {  // Note [Uneven segments]
      MC_NCCL_CHECK(ncclGroupStart());
      for (size_t r = 0; r < counts.size(); ++r) {
        if (counts[r] == 0) continue;
        char* seg = base + off[r] * esz;
        MC_NCCL_CHECK(ncclReduce(seg, seg, counts[r], nccl_type(dt), nccl_op(op), int(r), comm_, stream_));
      }
      MC_NCCL_CHECK(ncclGroupEnd());
    }
    return end();
  }

  CommHandle all_gather_async(void* buf, const std::vector<size_t>& counts, DType dt) override {
    MC_CHECK(counts.size() == size_t(size()), "all_gather: %zu counts for %d ranks", counts.size(), size());
    const std::vector<size_t> off = segment_offsets(counts);
    const size_t esz = dtype_size(dt);
    char* base = static_cast<char*>(buf);
    begin();
    if (equal(counts)) {
      MC_NCCL_CHECK(ncclAllGather(base + off[size_t(rank())] * esz, base, counts[0], nccl_type(dt), comm_, stream_));
    } else {  // Note [Uneven segments]
      MC_NCCL_CHECK(ncclGroupStart());
      for (size_t r = 0; r < counts.size(); ++r) {
        if (counts[r] == 0) continue;
        char* seg = base + off[r] * esz;
        MC_NCCL_CHECK(ncclBroadcast(seg, seg, counts[r], nccl_type(dt), int(r), comm_, stream_));
      }
      MC_NCCL_CHECK(ncclGroupEnd());
    }
    return end();
  }

  CommHandle broadcast_async(void* buf, size_t count, DType dt, int root) override {
    MC_CHECK(root >= 0 && root < size(), "broadcast root %d outside [0, %d)", root, size());
    begin();
    MC_NCCL_CHECK(ncclBroadcast(buf, buf, count, nccl_type(dt), root, comm_, stream_));
    return end();
  }

  // A host barrier after the collectives issued so far have completed on this rank.
  void barrier() override {
    MC_NCCL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    boot_->barrier();
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);  // unblocks kernels waiting on a lost peer
    boot_->abort(code);
    std::_Exit(code);  // not reached: the bootstrap abort does not return
  }

  double reduce_host_scalar(double x, RedOp op) override { return boot_->all_reduce_host(x, op); }

 private:
  static bool equal(const std::vector<size_t>& counts) {
    for (size_t c : counts)
      if (c != counts[0]) return false;
    return true;
  }
  // Step 1 of Note [NCCL ordering].
  void begin() {
    cudaEvent_t ready;
    MC_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    MC_NCCL_CUDA_CHECK(cudaEventRecord(ready, compute_));
    MC_NCCL_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    MC_NCCL_CUDA_CHECK(cudaEventDestroy(ready));  // freed once the wait is satisfied
  }
  // Step 3 of Note [NCCL ordering].
  CommHandle end() {
    cudaEvent_t done;
    MC_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    MC_NCCL_CUDA_CHECK(cudaEventRecord(done, stream_));
    return std::make_shared<NcclWork>(done, compute_);
  }

  std::unique_ptr<Communicator> boot_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> bootstrap, Ops& ops) {
  return std::make_unique<NcclCommunicator>(std::move(bootstrap), ops);
}

}  // namespace mc
