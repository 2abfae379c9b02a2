// mc_cluster_probe: what one rank of a multi-host job sees, through the same communicator factory the
// trainer uses. Each rank prints one line
//   probe rank R size N local_rank L local_size S host H sum X
// where X is the all-reduced sum of the ranks (N(N-1)/2 when every rank reached every other).
// Invariant: run under mpirun; exits 1 (with the error) if the communicator cannot be made.
#include <unistd.h>

#include <cstdio>
#include <exception>

#include "dist/comm.h"

int main(int argc, char** argv) {
  int rc = 0;
  mc::dist_init(&argc, &argv);
  try {
    auto comm = mc::make_communicator("mpi", nullptr);
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    const double sum = comm->all_reduce_host(double(comm->rank()), mc::RedOp::Sum);
    std::printf("probe rank %d size %d local_rank %d local_size %d host %s sum %.0f\n", comm->rank(), comm->size(),
                comm->local_rank(), comm->local_size(), host, sum);
    std::fflush(stdout);
    comm->barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mc_cluster_probe: %s\n", e.what());
    rc = 1;
  }
  mc::dist_finalize();
  return rc;
}
