// Token + position embedding: forward out = wte[token] + wpe[t] (bf16), backward accumulates into the
// fp32 dwte/dwpe ("+="). Backward is deterministic: no atomics, sums run in token-position order
// (Note [Encoder backward]).
#include "common.cuh"
#include "kernels.h"

namespace mc {
namespace kern {

// One thread per 8 channels (C % 8 == 0 and aligned rows) or per channel (VEC == 1).
template <int VEC>
__global__ void encoder_forward_kernel(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T,
                                       int C) {
  const int cv = C / VEC;
  const size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= size_t(B) * T * cv) return;
  const size_t bt = idx / cv;
  const int c = int(idx % cv) * VEC;
  const int t = int(bt % T);
  const int tok = tokens[bt];
  const bf16* a = wte + size_t(tok) * C + c;
  const bf16* p = wpe + size_t(t) * C + c;
  bf16* o = out + bt * C + c;
  if constexpr (VEC == 8) {
    Pack<bf16> x = load_pack(a), y = load_pack(p), r;
#pragma unroll
    for (int i = 0; i < 8; ++i) r.v[i] = from_f<bf16>(to_f(x.v[i]) + to_f(y.v[i]));
    store_pack(o, r);
  } else {
    o[0] = from_f<bf16>(to_f(a[0]) + to_f(p[0]));
  }
}

void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                     cudaStream_t stream) {
  if (B * T == 0 || C == 0) return;
  const bool vec = C % 8 == 0 && is_aligned(out, 16) && is_aligned(wte, 16) && is_aligned(wpe, 16);
  const int threads = 256;
  if (vec) {
    encoder_forward_kernel<8><<<ceil_div((long long)B * T * (C / 8), threads), threads, 0, stream>>>(out, tokens, wte, wpe, B, T, C);
  } else {
    encoder_forward_kernel<1><<<ceil_div((long long)B * T * C, threads), threads, 0, stream>>>(out, tokens, wte, wpe, B, T, C);
  }
  CUDA_CHECK_LAUNCH();
}

// Note [Encoder backward]
// dwte[v] += sum over positions i with tokens[i] == v of dout[i]. Atomics would make the fp32 sum
// order (and so the bits) vary run to run, so instead:
//  1. next_kernel: for each position i, next[i] = the smallest j > i with the same token (-1 if none),
//     and has_prev[next[i]] = 1. Each block scans the later tokens through shared memory: O(N^2) int
//     compares in the worst case, ~0.1 ms for N = B*T = 16k.
//  2. wte_kernel: blocks over (position i, channel chunk); only "first occurrence" positions
//     (has_prev == 0) do work: they walk their chain i -> next[i] -> ... summing dout in position
//     order in fp32, then add once into dwte. Every dwte row is owned by exactly one chain: no races.
//     A very frequent token makes a long serial chain (hundreds of dependent loads); fine at our
//     sizes, and the first thing to change (sort + segmented sum) if it ever shows in a profile.
//  3. wpe_kernel: dwpe[t, c] += sum over b (in b order) of dout[b, t, c], one thread per (t, c).

size_t encoder_backward_scratch_bytes(int B, int T) { return size_t(B) * T * 2 * sizeof(int); }

// The block walks the later tokens in shared-memory tiles of kNextTile (all threads read the same
// element: a broadcast), until every thread of the block has found its next occurrence.
constexpr int kNextTile = 1024;
__global__ void encoder_next_kernel(int* next, int* has_prev, const int* tokens, int N) {
  __shared__ int tile[kNextTile];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int tok = i < N ? tokens[i] : -1;
  bool searching = i < N;
  int nx = -1;
  for (int base = blockIdx.x * blockDim.x + 1; base < N; base += kNextTile) {
    if (!__syncthreads_or(searching)) break;  // also: everyone is done reading the previous tile
    for (int k = threadIdx.x; k < kNextTile; k += blockDim.x) tile[k] = base + k < N ? tokens[base + k] : -2;
    __syncthreads();
    if (searching) {
      const int lim = min(kNextTile, N - base);
      for (int k = max(0, i + 1 - base); k < lim; ++k)
        if (tile[k] == tok) {
          nx = base + k;
          searching = false;
          break;
        }
    }
  }
  if (i >= N) return;
  next[i] = nx;
  if (nx >= 0) has_prev[nx] = 1;  // exactly one i points at each nx: a plain store suffices
}

__global__ void encoder_wte_kernel(float* dwte, const bf16* dout, const int* tokens, const int* next,
                                   const int* has_prev, int C) {
  const int i = blockIdx.x;
  if (has_prev[i]) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.f;
  for (int j = i; j >= 0; j = next[j]) acc += to_f(dout[size_t(j) * C + c]);
  dwte[size_t(tokens[i]) * C + c] += acc;
}

__global__ void encoder_wpe_kernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= size_t(T) * C) return;
  float acc = 0.f;
  for (int b = 0; b < B; ++b) acc += to_f(dout[size_t(b) * T * C + idx]);
  dwpe[idx] += acc;
}

void encoder_backward(float* dwte, float* dwpe, const bf16* dout, const int* tokens, void* scratch, int B, int T,
                      int C, cudaStream_t stream) {
  const int N = B * T;
  if (N == 0 || C == 0) return;
  int* next = static_cast<int*>(scratch);
  int* has_prev = next + N;
  CUDA_CHECK(cudaMemsetAsync(has_prev, 0, size_t(N) * sizeof(int), stream));
  encoder_next_kernel<<<ceil_div(N, 256), 256, 0, stream>>>(next, has_prev, tokens, N);
  CUDA_CHECK_LAUNCH();
  const int threads = C < 256 ? ((C + 31) / 32) * 32 : 256;
  encoder_wte_kernel<<<dim3(N, ceil_div(C, threads)), threads, 0, stream>>>(dwte, dout, tokens, next, has_prev, C);
  CUDA_CHECK_LAUNCH();
  encoder_wpe_kernel<<<ceil_div((long long)T * C, 256), 256, 0, stream>>>(dwpe, dout, B, T, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kern
}  // namespace mc
