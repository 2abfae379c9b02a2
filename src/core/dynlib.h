// Shared libraries that minicolossus opens at run time instead of linking: cuBLASLt and NCCL. A binary
// built on one machine then starts anywhere (a CPU-only node, a GPU node whose NCCL lives in a Python
// package), and a missing library is a one-line error naming where it was looked for, not a loader crash
// before main. Invariant: callers go through open_runtime_library() (which throws UsageError) before
// any symbol of that library is used; runtime_symbol() after a successful open never fails for the
// symbols our headers declare, except against an older library (RuntimeError naming the symbol).
#pragma once
#include <string>
#include <vector>

namespace mc {

// Note [Run-time libraries]
// Why: the CUDA runtime is linked statically (it finds the driver, libcuda.so.1, itself and reports
// "no driver" as an error code), but cuBLASLt is ~500 MB and NCCL ~200 MB, ship with the CUDA toolkit or
// with pip packages (nvidia-cublas, nvidia-nccl-cu13), and are not everywhere. Linking them would make
// the dynamic loader refuse to start the program where they are missing, even for --device cpu.
// Where a library is looked for, in order (the first that dlopen accepts wins):
//   1. $<env> when set: the library file itself, or a directory holding it (nothing else is tried);
//   2. the plain soname: LD_LIBRARY_PATH, the executable's RUNPATH (a bundle's lib/), ld.so.cache;
//   3. the CUDA toolkit: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda (lib64, lib, targets/x86_64-linux/lib);
//   4. NVIDIA's Python packages: each directory of the `nvidia` namespace package that `python3` finds,
//      joined with the library's package subdirectories (nccl/lib, cublas/lib, cu13/lib).
struct RuntimeLibrary {
  std::string name;    // what users call it: "NCCL", "cuBLASLt"
  std::string soname;  // "libnccl.so.2"
  std::string env;     // override variable: "MC_NCCL_LIB"
  std::vector<std::string> python_subdirs;  // under nvidia/: {"nccl/lib"}
  bool in_toolkit = true;                   // also look in the CUDA toolkit's library directories
};

// Opens lib (once per process; later calls return the same handle). On failure throws UsageError with
// one line: "<flag>: cannot load <name> (<soname>): <why>; set <env> ...".
void* open_runtime_library(const RuntimeLibrary& lib, const std::string& flag);
// True when open_runtime_library would succeed (never throws; the result is cached).
bool runtime_library_available(const RuntimeLibrary& lib);
// The path the library was loaded from ("" when not loaded).
std::string runtime_library_path(const RuntimeLibrary& lib);
// The address of `symbol` in an opened lib; throws RuntimeError when it is missing (an older library).
void* runtime_symbol(const RuntimeLibrary& lib, const char* symbol);

// The libraries minicolossus loads (defined in dynlib.cpp).
const RuntimeLibrary& cublaslt_library();
const RuntimeLibrary& nccl_library();

}  // namespace mc

// Defines the C function `ret name params` as a call of the same function of the run-time library
// mc::lib(), looked up on first use (the shims cublaslt_shim.cpp and nccl_shim_nccl.cpp).
#define MC_RUNTIME_FORWARD(lib, ret, name, params, args)                                  \
  extern "C" ret name params {                                                            \
    using Fn = ret(*) params;                                                             \
    static const Fn fn = reinterpret_cast<Fn>(::mc::runtime_symbol(::mc::lib(), #name)); \
    return fn args;                                                                       \
  }
