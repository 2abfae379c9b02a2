#include "core/start_signals.h"

#include <signal.h>

namespace mc {

// Note [Ignored at start]
// `nohup cmd` starts cmd with SIGHUP ignored, and train and launch keep it so (a hang-up stops them
// gracefully otherwise). But a library's constructor may install its own SIGHUP handler before main
// runs: UCX's libucs (pulled in by the bundle's Open MPI) does, for its debug signal, so main saw a
// handler instead of SIG_IGN and the run stopped at the hang-up nohup was meant to survive (found by
// the bundle's cli_fault_signal). Functions in the executable's .preinit_array run before every shared
// library's initializer, so the disposition is read there, once, as the process was started.
namespace {
bool g_hup_ignored = false;

void record_start_signals(int, char**, char**) {
  struct sigaction sa {};
  g_hup_ignored = ::sigaction(SIGHUP, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

__attribute__((section(".preinit_array"), used)) void (*const g_preinit)(int, char**, char**) = record_start_signals;
}  // namespace

bool hup_ignored_at_start() { return g_hup_ignored; }

}  // namespace mc
