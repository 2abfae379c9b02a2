// The MPI communicator's public constructor and the MPI check macro. Includes <mpi.h>: include it only
// from *_mpi.cpp files and tests/mpi/ (the build compiles those only when MPI is found).
// Invariant: MPI is initialised (dist_init) before a communicator is made and finalised after the last
// one is destroyed.
#pragma once
#include <mpi.h>

#include <climits>
#include <memory>

#include "dist/comm.h"

namespace mc {

// A communicator over a duplicate of `comm` (the caller may free `comm` afterwards). Collective over
// `comm`. max_chunk_elems bounds the element count of one MPI call (tests lower it to exercise the
// chunking of counts > INT_MAX; see Note [Large counts] in comm_mpi.cpp).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, size_t max_chunk_elems = INT_MAX);

// Throws RuntimeError "[rank r] file:line: <call> failed: <MPI error string>".
[[noreturn]] void mpi_fail(int code, const char* call, const char* file, int line);

}  // namespace mc

// Wraps every MPI call; the communicator must have MPI_ERRORS_RETURN set for errors to reach it.
#define MC_MPI_CHECK(call)                                                    \
  do {                                                                        \
    const int mc_mpi_rc_ = (call);                                            \
    if (mc_mpi_rc_ != MPI_SUCCESS) ::mc::mpi_fail(mc_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)
