// main() of every MPI test executable (run as mpirun -np N mc_mpi_X): starts MPI through dist_init,
// runs the tests on every rank, prints gtest's report on rank 0 only (other ranks print just their
// failures, tagged with the rank), and exits non-zero on every rank if any rank failed.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "core/errors.h"
#include "dist/comm.h"

namespace {

// On ranks other than 0: silent except for failed assertions, so a failure on rank 3 is still seen.
class FailuresOnly : public ::testing::EmptyTestEventListener {
 public:
  explicit FailuresOnly(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.summary());
    std::fflush(stderr);
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  setenv("MC_FORCE_MPI", "1", 0);  // a direct ./mc_mpi_X (no mpirun) runs as a one-rank MPI job
  try {
    mc::dist_init(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_main: %s\n", e.what());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailuresOnly(rank));
  }
  const int mine = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any = mine;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any && !mine && rank == 0) std::fprintf(stderr, "mpi_main: another rank failed\n");
  mc::dist_finalize();
  return any;
}
