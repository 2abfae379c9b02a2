// The record of an out-of-range cross-entropy target, shared by the CUDA kernel (which writes it), the
// CUDA ops (which read it back and throw) and the CPU unit tests (which check the encoding and the
// message without a GPU). Plain C++ (no CUDA headers needed); device-callable under nvcc.
// Invariant: the record is kNoBadTarget, or pack_bad_target(row, target) of the LOWEST bad row seen
// since it was last reset (atomicMin over packed values orders by row first).
//
// Note [Invalid targets]
// The CPU twin checks every target before computing and throws RuntimeError "crossentropy: target T
// at row R outside [0, V)". The GPU kernel cannot throw, and the Ops contract (ops.h) lets only calls
// that return host values wait, so checking on the host inside crossentropy() would cost a device
// synchronisation per call. Instead:
//  - the kernel's thread 0 of a row with target < 0 or >= V does atomicMin(record, pack(row, target))
//    into an 8-byte device word (it never reads the logits at such a target; its loss stays NaN);
//  - the word sits right after the device result of sum()/sum_squares(), which already copy their
//    result back and wait: the same copy now brings the record along (16 bytes instead of 8), so the
//    check costs nothing on the hot path;
//  - if the record is set, the CUDA ops reset it and throw the CPU twin's RuntimeError (naming the
//    lowest bad row and its target) from that sum()/sum_squares().
// GPT2::forward sums the losses right after crossentropy(), so an invalid target never becomes a
// returned loss, on either backend. What differs: the CPU throws at crossentropy() with the logits
// untouched; the GPU throws at the next sum()/sum_squares() of the same ops object, after the kernel
// has already written losses (NaN for the bad rows) and, with backward, dlogits. Code that reads the
// losses buffer with download() instead of sum() would see the NaN and no exception.
#pragma once
#include <cstdint>
#include <string>

#include "core/errors.h"

#if defined(__CUDACC__)
#define MC_BAD_TARGET_HD __host__ __device__
#else
#define MC_BAD_TARGET_HD
#endif

namespace mc {
namespace kern {

// No bad target recorded (all bits set: larger than any packed record).
constexpr unsigned long long kNoBadTarget = ~0ull;

// Row in the high 32 bits (rows are >= 0, so records order by row), the target's bits in the low 32.
MC_BAD_TARGET_HD inline unsigned long long pack_bad_target(int row, int target) {
  return (static_cast<unsigned long long>(static_cast<uint32_t>(row)) << 32) |
         static_cast<unsigned long long>(static_cast<uint32_t>(target));
}

// False for kNoBadTarget; otherwise the row and target that pack_bad_target was given.
inline bool unpack_bad_target(unsigned long long record, int* row, int* target) {
  if (record == kNoBadTarget) return false;
  *row = static_cast<int>(static_cast<uint32_t>(record >> 32));
  *target = static_cast<int>(static_cast<uint32_t>(record & 0xffffffffull));
  return true;
}

// The wording of the CPU twin's check (src/ops/cpu/cpu_ops.cpp crossentropy).
inline std::string bad_target_message(int row, int target, int V) {
  return strfmt("crossentropy: target %d at row %d outside [0, %d)", target, row, V);
}

}  // namespace kern
}  // namespace mc
