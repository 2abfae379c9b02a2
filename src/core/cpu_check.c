/* Refuses, with one line, to run a binary built for an x86-64 level (MC_ARCH, e.g. the bundle's
   x86-64-v3) on a CPU without it, instead of dying of an illegal instruction. Written in C so that it
   is compiled without MC_ARCH, and run as a constructor before any C++ static initialiser. */
#include <stdio.h>
#include <stdlib.h>

#if defined(MC_ARCH_LEVEL) && defined(__x86_64__)
__attribute__((constructor(101))) static void mc_cpu_check(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports(MC_ARCH_LEVEL)) {
    fprintf(stderr,
            "minicolossus: this binary was built for " MC_ARCH_LEVEL
            " CPUs and this CPU lacks some of its instructions; rebuild on this machine (scripts/build.sh)\n");
    exit(1);
  }
}
#endif
