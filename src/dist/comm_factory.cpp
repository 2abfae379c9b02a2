// The one place that knows which communicator backends were built (MC_HAVE_MPI, MC_HAVE_NCCL): process
// start/stop of MPI and the choice of backend for --comm. Invariant: dist_init runs before any
// communicator is made, and dist_finalize after the last one is destroyed.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <string>

#include "core/dynlib.h"
#include "core/errors.h"
#include "dist/agree.h"
#include "dist/backends.h"
#include "dist/comm.h"
#include "dist/watchdog.h"
#include "ops/ops.h"
#ifdef MC_HAVE_MPI
#include <mpi.h>
#endif

namespace mc {
namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

#ifdef MC_HAVE_MPI
bool g_we_initialised_mpi = false;

bool mpi_up() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

// MPI_Init_thread asking for MPI_THREAD_MULTIPLE; see Note [Thread level] in comm_mpi.cpp for why
// SERIALIZED is still accepted.
void start_mpi(int* argc, char*** argv) {
  if (mpi_up()) return;
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) throw RuntimeError("MPI was already finalised; it cannot be started again");
  int provided = MPI_THREAD_SINGLE;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    throw RuntimeError("MPI_Init_thread failed");
  g_we_initialised_mpi = true;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  error_rank() = rank;
  if (provided < MPI_THREAD_SERIALIZED)
    throw RuntimeError(strfmt("[rank %d] MPI provides thread level %d; minicolossus needs at least "
                              "MPI_THREAD_SERIALIZED (rebuild Open MPI with thread support)",
                              rank, provided));
}

int mpi_world_size() {
  if (!mpi_up()) return 1;
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
#endif

bool force_mpi() {
  const char* v = std::getenv("MC_FORCE_MPI");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

#ifndef MC_HAVE_MPI
// The world size a launcher announced in the environment (1 if none did).
int launcher_world_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"}) {
    const char* s = std::getenv(v);
    if (s && std::atoi(s) > 1) return std::atoi(s);
  }
  return 1;
}
#endif

// World size as the ranks see it (1 when MPI is not running). Built without MPI, a launch with several
// ranks would silently run that many independent single-rank jobs: refuse it instead.
int world_size() {
#ifdef MC_HAVE_MPI
  return mpi_world_size();
#else
  const int n = launcher_world_size();
  if (n > 1)
    throw UsageError(strfmt("--comm: launched with %d ranks, but this minicolossus was built without MPI; run "
                            "scripts/setup.sh and rebuild",
                            n));
  return 1;
#endif
}

// The host-buffer communicator over all ranks: mpi when MPI runs, single otherwise.
std::unique_ptr<Communicator> host_world() {
#ifdef MC_HAVE_MPI
  start_mpi(nullptr, nullptr);  // no-op after dist_init; a singleton MPI for a forced --comm mpi otherwise
  return make_mpi_world_communicator();
#else
  return make_single_communicator(false);
#endif
}

void require_nccl_possible(const Communicator& host, Ops* ops) {
#ifndef MC_HAVE_NCCL
  (void)host;
  (void)ops;
  throw UsageError("--comm nccl: built without NCCL (needs CUDA and NCCL; configure with -DMC_NCCL=ON)");
#else
  if (ops && !ops->on_device()) throw UsageError("--comm nccl: needs --device cuda (NCCL reduces GPU buffers)");
  const int gpus = cuda_device_count();
  if (gpus <= 0) throw UsageError("--comm nccl: no usable CUDA GPU is visible; use --comm mpi");
  if (host.local_size() > gpus)
    throw UsageError(strfmt("--comm nccl: %d ranks share %d GPU%s on this node; NCCL needs one GPU per rank — use "
                            "--comm mpi",
                            host.local_size(), gpus, gpus == 1 ? "" : "s"));
  load_nccl();
#endif
}

// Wraps a host communicator for ops: staged through host memory when the ops live on a device.
std::unique_ptr<Communicator> for_ops(std::unique_ptr<Communicator> host, Ops* ops) {
  if (ops && ops->on_device()) return make_staged_communicator(std::move(host), *ops);
  return host;
}

}  // namespace

std::unique_ptr<Communicator> make_world_communicator() {
#ifdef MC_HAVE_MPI
  if (mpi_up()) return make_mpi_world_communicator();
#endif
  return make_single_communicator(false);
}

bool launched_by_mpi() {
  // Open MPI, MPICH/Hydra and PMI-1/2, PMIx launchers, MVAPICH, and srun (which sets SLURM_PROCID for
  // plain batch scripts too, so it counts only together with a task count).
  static const char* const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                                     "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE"};
  for (const char* v : vars)
    if (env_set(v)) return true;
  return env_set("SLURM_PROCID") && (env_set("SLURM_NTASKS") || env_set("SLURM_NPROCS"));
}

void dist_init(int* argc, char*** argv) {
#ifdef MC_HAVE_MPI
  if (launched_by_mpi() || force_mpi()) start_mpi(argc, argv);
#else
  (void)argc;
  (void)argv;
#endif
}

void dist_finalize() {
#ifdef MC_HAVE_MPI
  if (g_we_initialised_mpi && mpi_up()) {
    watchdog_finalizing();  // MPI_Finalize waits for every peer: a stopped one must not hang us
    MPI_Finalize();
  }
#endif
  watchdog_stop();
}

void dist_abort(int code) {
#ifdef MC_HAVE_MPI
  if (mpi_up()) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

// Note [Backend choice]
// "auto": nccl when the ops are on a GPU, NCCL is built and found at run time, there are several ranks
// and each rank of a node has its own GPU (all ranks agree on it, or none uses nccl); several ranks otherwise -> mpi (staged through host memory when the ops are on
// a GPU); one rank -> single (even under mpirun -np 1: identity collectives are the fastest). A null
// `ops` asks for host buffers: "nccl" with null ops validates what it can and returns the MPI host
// communicator NCCL would bootstrap from. (The trainer and bench-allreduce learn the local rank, which
// picks the GPU, from make_world_communicator(), and call this once, with their ops.)
std::unique_ptr<Communicator> make_communicator(const std::string& kind, Ops* ops) {
  const bool on_device = ops && ops->on_device();
  if (kind == "single") {
    const int n = world_size();
    if (n != 1) throw UsageError(strfmt("--comm single: launched with %d ranks; single needs exactly one", n));
    return make_single_communicator(on_device);
  }
  if (kind == "mpi") {
#ifdef MC_HAVE_MPI
    return for_ops(host_world(), ops);
#else
    throw UsageError("--comm mpi: built without MPI; run scripts/setup.sh and rebuild");
#endif
  }
  if (kind == "nccl") {
#ifdef MC_HAVE_NCCL
    auto host = host_world();
    // Nodes may differ (GPU count, NCCL installed): a rank that cannot use NCCL must not leave the others
    // waiting in NCCL's initialisation (Note [Agreed failure] in agree.h).
    std::exception_ptr err;
    try {
      require_nccl_possible(*host, ops);
    } catch (...) {
      err = std::current_exception();
    }
    agree_and_rethrow(*host, err);  // the same UsageError on every rank
    if (!ops) return host;
    return make_nccl_communicator(std::move(host), *ops);
#else
    require_nccl_possible(*make_single_communicator(false), ops);  // throws: not built
    return nullptr;
#endif
  }
  if (kind == "auto") {
#ifdef MC_HAVE_MPI
    if (launched_by_mpi() || force_mpi()) start_mpi(nullptr, nullptr);
#endif
    if (world_size() <= 1) return make_single_communicator(on_device);
    auto host = host_world();
#ifdef MC_HAVE_NCCL
    if (on_device) {
      // Every rank must pick the same backend, and nodes may differ (GPU count, NCCL installed): agree.
      const bool gpus_ok = cuda_device_count() >= host->local_size();
      const bool lib_ok = gpus_ok && runtime_library_available(nccl_library());
      if (host->all_reduce_host(lib_ok ? 1.0 : 0.0, RedOp::Min) > 0.5)
        return make_nccl_communicator(std::move(host), *ops);
      if (gpus_ok && !lib_ok)
        std::fprintf(stderr, "[rank %d] --comm auto: NCCL (libnccl.so.2) not found, reducing through host memory "
                             "with MPI (set MC_NCCL_LIB to use NCCL)\n", host->rank());
    }
#endif
    return for_ops(std::move(host), ops);
  }
  throw UsageError("--comm: unknown backend '" + kind + "' (expected auto|single|mpi|nccl)");
}

}  // namespace mc
