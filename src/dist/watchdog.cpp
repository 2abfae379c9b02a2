// The job-wide watchdog thread (Note [Watchdog] in watchdog.h).
#include "dist/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "dist/comm.h"

namespace mc {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct State {
  std::mutex mu;
  std::condition_variable cv;
  std::thread thread;
  bool running = false, stop = false, finalizing = false;
  double timeout_s = 0, slowest_s = 0, last = 0, phase_min_s = 0;
  std::string phase;
};
State& state() {
  static State s;
  return s;
}

void watch() {
  State& s = state();
  std::unique_lock<std::mutex> lk(s.mu);
  while (!s.stop) {
    s.cv.wait_for(lk, std::chrono::milliseconds(200));
    if (s.stop) break;
    const double limit = std::max({s.timeout_s, 10.0 * s.slowest_s, s.phase_min_s});
    const double idle = now_s() - s.last;
    if (idle <= limit) continue;
    const int r = error_rank();
    std::fprintf(stderr,
                 "minicolossus: [rank %d] watchdog: no progress for %.0f s during %s (limit %.0f s, --watchdog-s); "
                 "a peer rank is hung, stopped or unreachable; ending the job\n",
                 r < 0 ? 0 : r, idle, s.phase.c_str(), limit);
    std::fflush(stderr);
    if (s.finalizing) _exit(1);  // MPI_Finalize has begun: MPI_Abort is no longer allowed
    lk.unlock();
    dist_abort(1);  // does not return
  }
}

// Test hook: MC_TEST_STOP_IN=<rank>:<phase prefix> makes that rank stop itself (SIGSTOP, as `kill -STOP`
// would) when it enters a matching phase, so tests can hang a rank at start-up, in a checkpoint or in
// MPI_Finalize deterministically.
void maybe_stop_for_test(const std::string& phase) {
  static const char* hook = std::getenv("MC_TEST_STOP_IN");
  if (!hook) return;
  const char* colon = std::strchr(hook, ':');
  if (!colon || std::atoi(hook) != error_rank()) return;
  if (phase.rfind(colon + 1, 0) == 0) std::raise(SIGSTOP);
}

}  // namespace

void watchdog_start(double timeout_s, const std::string& phase) {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  if (timeout_s <= 0) return;
  if (s.running) {  // already watching (started before the flags were parsed): take the new limit
    s.timeout_s = timeout_s;
    s.phase = phase;
    s.last = now_s();
    return;
  }
  s.running = true;
  s.stop = false;
  s.finalizing = false;
  s.timeout_s = timeout_s;
  s.slowest_s = 0;
  s.last = now_s();
  s.phase = phase;
  s.thread = std::thread(watch);
}

void watchdog_phase(const std::string& phase, double min_limit_s) {
  {
    State& s = state();
    std::lock_guard<std::mutex> lk(s.mu);
    s.phase = phase;
    s.phase_min_s = min_limit_s;
    s.last = now_s();
  }
  maybe_stop_for_test(phase);
}

void watchdog_beat(double work_s) {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  s.slowest_s = std::max(s.slowest_s, work_s);
  s.last = now_s();
}

void watchdog_finalizing() {
  {
    State& s = state();
    std::lock_guard<std::mutex> lk(s.mu);
    s.finalizing = true;
    s.phase = "shutdown (MPI_Finalize)";
    s.phase_min_s = 0;
    s.last = now_s();
  }
  maybe_stop_for_test("shutdown (MPI_Finalize)");
}

void watchdog_stop() {
  State& s = state();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (!s.running) return;
    s.stop = true;
  }
  s.cv.notify_all();
  if (s.thread.joinable()) s.thread.join();
  std::lock_guard<std::mutex> lk(s.mu);
  s.running = false;
}

bool watchdog_running() {
  State& s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  return s.running;
}

}  // namespace mc
