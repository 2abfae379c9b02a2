// The CPU ops' vectorisable exp (Note [Vectorisable exp] in src/ops/cpu/cpu_ops.cpp) against std::exp,
// including the inputs that used to reach undefined behaviour (a float-to-int conversion of NaN, then
// a negative value shifted left): huge, +-inf and NaN. Build with -fsanitize=undefined to see UBSan
// stay quiet (scripts in the report); without it the value checks still hold.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace mc {
float cpu_vexp_for_test(float x);  // src/ops/cpu/cpu_ops.cpp
}

using mc::cpu_vexp_for_test;

TEST(VExp, MatchesStdExpInRange) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01171875f) {
    const double want = std::exp(double(x));
    const double got = cpu_vexp_for_test(x);
    worst = std::max(worst, std::fabs(got - want) / want);
  }
  EXPECT_LT(worst, 1e-6) << "worst relative error";
}

TEST(VExp, HugeInfiniteAndNaNInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float top = cpu_vexp_for_test(88.3f);  // the saturation value
  EXPECT_NEAR(top / std::exp(double(88.3f)), 1.0, 1e-6);
  for (float x : {88.3f, 88.5f, 89.0f, 1e4f, 1e30f, 3.4e38f, inf}) {
    const float got = cpu_vexp_for_test(x);
    EXPECT_TRUE(std::isfinite(got)) << x;
    EXPECT_EQ(got, top) << x;
    EXPECT_LE(got, std::exp(x)) << "saturates at or below std::exp for " << x;
  }
  for (float x : {-87.4f, -100.0f, -1e4f, -1e30f, -3.4e38f, -inf}) {
    const float got = cpu_vexp_for_test(x);
    EXPECT_EQ(got, 0.0f) << x;
    EXPECT_LE(std::fabs(double(got) - std::exp(double(x))), 1.2e-38) << x;
  }
  EXPECT_TRUE(std::isnan(cpu_vexp_for_test(nan)));
  EXPECT_TRUE(std::isnan(cpu_vexp_for_test(-nan)));
  EXPECT_TRUE(std::isnan(std::exp(nan)));
  // The same through a loop the compiler may vectorise, mixing every kind of input.
  std::vector<float> xs = {nan,   -inf,   inf, 0.0f, 1.0f,  -1.0f, 1e38f, -1e38f,
                           50.0f, -50.0f, nan, 3.0f, -3.0f, inf,   -inf,  0.5f};
  std::vector<float> ys(xs.size());
#pragma omp simd
  for (size_t i = 0; i < xs.size(); ++i) ys[i] = cpu_vexp_for_test(xs[i]);
  for (size_t i = 0; i < xs.size(); ++i) {
    const float x = xs[i];
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(ys[i]));
    } else if (x > 88.3f) {
      EXPECT_EQ(ys[i], top);
    } else if (x < -87.3f) {
      EXPECT_EQ(ys[i], 0.0f);
    } else {
      EXPECT_NEAR(ys[i] / std::exp(double(x)), 1.0, 1e-6) << x;
    }
  }
}
