// The bench-allreduce subcommand: an nccl-tests style all-reduce bandwidth table over the chosen
// communicator. Invariant: dist_init has run (every rank of the job calls it with the same flags).
#pragma once

namespace mc {

// argv[0] is the program and subcommand name. Returns 0; bad flags throw UsageError (exit 2).
int cmd_bench_allreduce(int argc, char** argv);

}  // namespace mc
