// The job-wide watchdog: a rank whose peers stop making progress ends the whole job instead of
// waiting forever (Note [Watchdog]).
#pragma once
#include <string>

namespace mc {

// Note [Watchdog]
// A dead rank is noticed by the launcher, which ends the job; a rank that hangs or is stopped is not:
// its peers wait in their next collective forever, whatever that collective is (the start-up
// agreement, a gradient bucket, the checkpoint barrier, MPI_Finalize). So each rank of a multi-rank
// job runs one watchdog thread from the moment its communicator exists until MPI_Finalize has
// returned. The code reports progress at every phase boundary (watchdog_phase: start-up steps, each
// training step, validation, checkpoint, shutdown) and after each unit of work (watchdog_beat, with
// how long the unit took). When no progress is reported for max(timeout_s, 10 x the slowest unit seen)
// the thread prints one line naming the phase it is stuck in and ends the job: MPI_Abort on the world
// while MPI is up, or _exit(1) once MPI_Finalize has begun (the launcher then kills the remaining
// ranks, stopped ones included, since a rank exited without finalising). A stopped rank's own watchdog
// is stopped with it; its peers' watchdogs end the job within the limit. Every phase a rank can spend
// waiting on its peers is therefore covered: nothing waits forever.

// Starts the thread (no-op if timeout_s <= 0; if it runs already, takes the new limit and phase).
void watchdog_start(double timeout_s, const std::string& phase);
// Progress: the rank enters `phase` (e.g. "step 12", "checkpoint"); the timer restarts. min_limit_s: the
// least time this phase is allowed (a checkpoint of a large model on slow storage: its peers wait in the
// barrier while rank 0 writes, and must not take that for a hang); 0: the usual limit.
void watchdog_phase(const std::string& phase, double min_limit_s = 0);
// Progress after a unit of work that took work_s seconds (raises the limit to 10 x the slowest).
void watchdog_beat(double work_s);
// MPI_Finalize is about to start: from now on the watchdog ends the job with _exit instead of MPI_Abort.
void watchdog_finalizing();
// Stops and joins the thread (idempotent; called after MPI_Finalize returned).
void watchdog_stop();
bool watchdog_running();

}  // namespace mc
