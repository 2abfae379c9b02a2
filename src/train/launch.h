// minicolossus launch: a supervisor that runs a training job under mpirun and, when a rank or host
// dies, relaunches it with --resume on the hosts that are still healthy, keeping the global batch
// (ranks x batch x grad-accum) exact, up to --max-restarts times (issue 7 part 3).
// Invariant: launch is a plain process (no MPI); it never restarts a job that rejected its input
// (exit 2) or that the user asked to stop, and it leaves no process of an attempt running.
#pragma once

namespace mc {
int cmd_launch(int argc, char** argv);
}  // namespace mc
