// Helpers shared by the GPU tests: skip without a GPU, bf16-representable random inputs, buffers on
// either backend built from host values, running one function on the CPU twin and on the GPU, and
// element-wise / relative-L2 / bit-exact comparisons.
// Invariant: randn/randint are deterministic in (n, seed) for any thread count, and every value randn
// returns is exactly representable in bf16, so both backends see exactly the same inputs.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

// Skips without a usable GPU, or fails when MC_REQUIRE_GPU is set to anything but "" or "0" (gpu-check
// sets it): on a GPU machine "no usable GPU" means a driver too old for this build's CUDA runtime or a
// hidden device, and every GPU test skipping would otherwise read as a pass.
#define NEED_GPU()                                                                                       \
  do {                                                                                                   \
    if (mc::cuda_device_count() == 0) {                                                                  \
      if (mc::test::gpu_required())                                                                      \
        FAIL() << "no usable CUDA GPU (driver older than this build's CUDA runtime, or no device "       \
                  "visible), and MC_REQUIRE_GPU is set";                                                 \
      GTEST_SKIP() << "no CUDA GPU";                                                                     \
    }                                                                                                    \
  } while (0)

namespace mc::test {

inline float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }

inline bool gpu_required() {
  const char* v = std::getenv("MC_REQUIRE_GPU");
  return v && *v && std::strcmp(v, "0") != 0;
}

// n values ~ N(mean, stdv), rounded to bf16. Generated in chunks of 2^20 values, chunk k from
// Rng(seed, k) (chunk 0 is Rng(seed), so n <= 2^20 gives the plain sequential stream), in parallel:
// the 2e8-value inputs of the LM-head tests take ~0.3 s on 16 cores instead of ~5 s.
inline std::vector<float> randn(size_t n, float stdv, uint64_t seed, float mean = 0.f) {
  constexpr size_t kChunk = size_t(1) << 20;
  std::vector<float> v(n);
  const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    Rng r(seed, uint64_t(k));
    const size_t end = std::min(n, size_t(k + 1) * kChunk);
    for (size_t i = size_t(k) * kChunk; i < end; ++i) v[i] = bf16_round(mean + stdv * r.normal());
  }
  return v;
}
inline std::vector<int> randint(size_t n, int hi, uint64_t seed) {
  Rng r(seed);
  std::vector<int> v(n);
  for (auto& x : v) x = int(r.next() % uint64_t(hi));
  return v;
}

// Buffers on one backend, created from host values and read back as fp32.
struct Dev {
  Ops& o;
  std::vector<Buffer> keep;
  explicit Dev(Ops& ops) : o(ops) {}
  DType at() const { return o.act_dtype(); }
  Ptr act(const std::vector<float>& v) {
    keep.emplace_back(o, v.size() * dtype_size(at()));
    void* p = keep.back().get();
    if (at() == DType::F32) {
      o.upload(p, v.data(), v.size() * 4);
    } else {
      std::vector<uint16_t> h(v.size());
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
      o.upload(p, h.data(), h.size() * 2);
    }
    return Ptr(p, at());
  }
  // n act elements, all 0 (alloc() is zero-filled): no host array, no upload.
  Ptr act_zeros(size_t n) {
    keep.emplace_back(o, n * dtype_size(at()));
    return Ptr(keep.back().get(), at());
  }
  float* f32(const std::vector<float>& v) {
    keep.emplace_back(o, v.size() * 4);
    o.upload(keep.back().get(), v.data(), v.size() * 4);
    return keep.back().f32();
  }
  int* i32(const std::vector<int>& v) {
    keep.emplace_back(o, v.size() * 4);
    o.upload(keep.back().get(), v.data(), v.size() * 4);
    return keep.back().i32();
  }
  std::vector<float> get(Ptr p, size_t n) {
    std::vector<float> v(n);
    if (p.dt == DType::F32) {
      o.download(v.data(), p.p, n * 4);
    } else {
      std::vector<uint16_t> h(n);
      o.download(h.data(), p.p, n * 2);
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(h[i]);
    }
    return v;
  }
  std::vector<float> get(const float* p, size_t n) { return get(Ptr(const_cast<float*>(p), DType::F32), n); }
};

using Outs = std::vector<std::vector<float>>;

// Runs f on the CPU reference and on the GPU; returns {cpu outputs, gpu outputs}.
inline std::pair<Outs, Outs> both(const std::function<Outs(Ops&)>& f) {
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  Outs a = f(*cpu);
  Outs b = f(*gpu);
  return {std::move(a), std::move(b)};
}

// ||got - ref|| / ||ref|| (or ||got - ref|| when ref is all zeros).
inline double rel_l2(const std::vector<float>& ref, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Sum of squares in double.
inline double sum_sq(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return s;
}

// Element-wise |got - ref| <= atol + rtol |ref|, reporting the count, the worst element and the
// relative L2 error ||got - ref|| / ||ref||, which must also stay below l2.
inline void expect_close(const std::vector<float>& ref, const std::vector<float>& got, double rtol, double atol,
                         const std::string& what, double l2 = 1.0) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(double(got[i]) - double(ref[i]));
    const double lim = atol + rtol * std::fabs(double(ref[i]));
    if (!(d <= lim)) ++bad;  // NaN counts as bad
    if (!(d - lim <= worst_excess)) {
      worst_excess = d - lim;
      worst = i;
    }
  }
  const double err = rel_l2(ref, got);
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << ref.size() << " outside tolerance; worst [" << worst
                     << "] ref " << ref[worst] << " got " << got[worst] << "; rel L2 " << err;
  EXPECT_LE(err, l2) << what << ": relative L2 error";
}

inline void expect_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0 && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": not bit-identical (" << bad << " elements differ, first [" << first << "] "
                     << (a.empty() ? 0.f : a[first]) << " vs " << (b.empty() ? 0.f : b[first]) << ")";
}

}  // namespace mc::test
