// The Communicator interface: the collectives data parallelism needs, each with an async form.
// Backends: single (world size 1), mpi (host buffers; a worker thread makes the MPI calls so that
// async really overlaps), nccl (device buffers, its own CUDA stream), and staged (device buffers
// copied through host memory to an mpi communicator: several ranks sharing one GPU).
// Invariants:
//  - Every rank issues the same collectives in the same order (MPI/NCCL matching rules).
//  - Buffers are host memory unless device_buffers() is true.
//  - An async call returns at once; the buffer must not be touched until wait() returns. Handles
//    complete in issue order. Sync forms are async + wait.
//  - Collectives are in place: the result replaces the input in buf.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mc {

enum class RedOp { Sum, Avg, Max, Min };

// A pending collective. wait() blocks the host until the result is in place (nccl: until the
// compute stream is ordered after it — see Note [NCCL ordering] in comm_nccl.cpp).
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
};
using CommHandle = std::shared_ptr<CommWork>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;  // "single", "mpi", "nccl", "mpi+staging"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes on this node
  virtual int local_size() const = 0;
  virtual bool device_buffers() const = 0;

  // buf[0..count) = op over ranks of buf[0..count). Avg divides by size() (integer division for ints).
  virtual CommHandle all_reduce_async(void* buf, size_t count, DType dt, RedOp op) = 0;
  // buf holds sum(counts) elements on every rank. Afterwards rank r's segment
  // [offset_r, offset_r + counts[r]) holds op over ranks of that segment; other elements are unspecified.
  // counts.size() == size(); counts may be uneven and may contain zeros.
  virtual CommHandle reduce_scatter_async(void* buf, const std::vector<size_t>& counts, DType dt,
                                          RedOp op) = 0;
  // buf holds sum(counts) elements; rank r contributes its segment [offset_r, offset_r + counts[r]).
  // Afterwards every rank holds all segments.
  virtual CommHandle all_gather_async(void* buf, const std::vector<size_t>& counts, DType dt) = 0;
  virtual CommHandle broadcast_async(void* buf, size_t count, DType dt, int root) = 0;
  virtual void barrier() = 0;

  // Stops the whole job from any rank (MPI_Abort / ncclCommAbort): used when a peer is lost.
  [[noreturn]] virtual void abort(int code) = 0;

  void all_reduce(void* buf, size_t count, DType dt, RedOp op) { all_reduce_async(buf, count, dt, op)->wait(); }
  void reduce_scatter(void* buf, const std::vector<size_t>& counts, DType dt, RedOp op) {
    reduce_scatter_async(buf, counts, dt, op)->wait();
  }
  void all_gather(void* buf, const std::vector<size_t>& counts, DType dt) { all_gather_async(buf, counts, dt)->wait(); }
  void broadcast(void* buf, size_t count, DType dt, int root) { broadcast_async(buf, count, dt, root)->wait(); }

  // Conveniences on host scalars (always host memory, whatever device_buffers() says).
  double all_reduce_host(double x, RedOp op);
};

// Starts the process-level runtime (MPI_Init_thread when built with MPI and launched by a
// launcher, or when forced). Safe to call once; finalize at exit. Defined in comm_factory.cpp.
void dist_init(int* argc, char*** argv);
void dist_finalize();  // also stops the watchdog (Note [Watchdog] in watchdog.h) once MPI is down
// Ends the whole job from any rank without a communicator: MPI_Abort on the world when MPI is up,
// _exit(code) otherwise.
[[noreturn]] void dist_abort(int code);
// True when this process was started by mpirun/mpiexec/srun (environment variables): MPI is then
// initialised even for one rank ("auto" still picks single for a world of one).
bool launched_by_mpi();

// Picks the backend: "auto" -> single for a world of one; nccl when ops are on a GPU, nccl is built
// and each rank has its own GPU; otherwise mpi (staged through host memory if ops are on a GPU). "single" | "mpi" | "nccl" force one (UsageError naming --comm if impossible).
// ops may be null (host buffers only). When ops->on_device(), mpi is wrapped in host staging through
// ops->download/upload, and nccl orders itself after ops->stream().
class Ops;
std::unique_ptr<Communicator> make_communicator(const std::string& kind, Ops* ops);

// Host buffers over every rank of the job as launched, whatever the flags say: MPI's world when MPI is
// up, a single rank otherwise. Start-up uses it to agree on errors before --comm is even known to be
// valid on every rank (Note [Agreed failure] in agree.h).
std::unique_ptr<Communicator> make_world_communicator();

// The world communicator of MPI_COMM_SELF-like single rank, always available.
std::unique_ptr<Communicator> make_single_communicator();

// Byte offsets helper: exclusive prefix sum of counts.
inline std::vector<size_t> segment_offsets(const std::vector<size_t>& counts) {
  std::vector<size_t> off(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) off[i + 1] = off[i] + counts[i];
  return off;
}

// Even split of n elements over world ranks: rank r owns [n*r/world, n*(r+1)/world).
inline std::vector<size_t> even_split(size_t n, int world) {
  std::vector<size_t> c(world);
  for (int r = 0; r < world; ++r) c[r] = n * size_t(r + 1) / size_t(world) - n * size_t(r) / size_t(world);
  return c;
}

}  // namespace mc
