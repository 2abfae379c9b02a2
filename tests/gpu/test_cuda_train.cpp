// The trainer on the CUDA ops (one rank): the bf16 compute copy is the fp32 master rounded to bf16
// after every optimizer step; gradient clipping scales the update as on the CPU; ZeRO-1 trains like
// ZeRO-0; an interrupted and resumed run is bit-for-bit the uninterrupted one. Skips without a GPU.
// The sharded ZeRO-1 path (all_gather + convert of the master) needs several ranks: see
// DataParallel.CudaSharedGpuZeroOneMatchesZeroZero in tests/mpi/test_dp.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../test_util.h"
#include "dist/comm.h"
#include "gpu_test_util.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "train/trainer.h"

namespace mc {
namespace {

using test::bf16_round;
using test::expect_equal;
using test::rel_l2;

// The corpus is prepared once per process, on first use (so that a machine without a GPU skips
// without preparing anything).
const std::string& data_dir() {
  static const std::string d = test::make_corpus(test::scratch_dir("cuda_train"));
  return d;
}
std::string ckpt_dir(const std::string& tag) { return data_dir() + "/../" + tag; }

struct RunOut {
  TrainResult res;
  std::vector<double> losses;
  std::vector<float> master;  // fp32 master weights
  std::vector<float> copy;    // the compute copy, widened to fp32
  std::vector<float> grads;   // the gradient of the last step (what the last update used)
  std::vector<float> init;    // the master before the first step of this run
};

// One Trainer run on fresh ops of `device` (a fresh process, as far as the trainer can tell).
RunOut train(const std::string& device, const TrainConfig& c) {
  auto ops = make_ops(device, 0);
  auto comm = make_communicator("single", ops.get());
  Trainer t(plan_run(c), *comm, *ops);
  RunOut r;
  r.init = t.master_params();
  r.res = t.run();
  for (const auto& s : r.res.steps) r.losses.push_back(s.loss);
  r.master = t.master_params();
  r.copy = t.model().get_params();
  r.grads.resize(t.model().num_params());
  ops->download(r.grads.data(), t.model().grads(), r.grads.size() * sizeof(float));
  return r;
}

// The compute copy must be exactly the master rounded to nearest-even bf16 (the adamw kernel writes
// it from the updated master; a resume writes it through set_params).
void expect_copy_is_rounded_master(const RunOut& r, const std::string& what) {
  std::vector<float> want(r.master.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = bf16_round(r.master[i]);
  expect_equal(want, r.copy, what + ": bf16 copy == bf16(master)");
}

TEST(CudaTrain, Bf16CopyIsRoundedMaster) {
  NEED_GPU();
  for (int zero : {0, 1}) {
    TrainConfig c = test::tiny_run(data_dir(), "");
    c.device = "cuda";
    c.steps = 3;
    c.zero = zero;
    const RunOut r = train("cuda", c);
    ASSERT_EQ(r.losses.size(), 3u);
    for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
    expect_copy_is_rounded_master(r, "zero " + std::to_string(zero));
    // And the steps did move the weights.
    EXPECT_GT(rel_l2(r.init, r.master), 0.0);
  }
}

// Clipping, checked through one AdamW step made linear in the gradient. With m = v = 0, t = 1 and no
// weight decay, AdamW moves each weight by
//     delta_i = -lr * g_i s / (|g_i s| + eps),   s = clip / norm if norm > clip, else 1,
// so with eps = 1 the update is (almost) lr * s * g: its size shows the scale s that was applied.
// For each backend the update is checked against this formula with the backend's OWN gradient and
// norm (rel L2 1e-3: fp32 rounding of w - delta, ulp(0.02)/2 = 1e-9 against |delta| ~ 1e-5 per weight),
// and, when clipped, ||delta|| = lr * clip / (1 + O(clip)) (within 2%). Across backends: grad norm
// within 5% and delta within rel L2 1e-1 (the bf16 gradient tolerance of tests/gpu/test_cuda_model).
TEST(CudaTrain, ClippingMatchesCpu) {
  NEED_GPU();
  for (float clip : {1e-2f, 0.0f}) {  // 1e-2: far below the initial norm (~12); 0: clipping off
    TrainConfig c = test::tiny_run(data_dir(), "");
    c.steps = 1;
    c.warmup = 0;  // lr_at(0) = lr exactly
    c.lr = 1.0f;
    c.eps = 1.0f;
    c.weight_decay = 0.0f;
    c.grad_clip = clip;
    RunOut out[2];
    double norm[2];
    std::vector<float> delta[2];
    const char* dev[2] = {"cpu", "cuda"};
    for (int k = 0; k < 2; ++k) {
      c.device = dev[k];
      out[k] = train(dev[k], c);
      const RunOut& r = out[k];
      norm[k] = r.res.steps.at(0).grad_norm;
      ASSERT_TRUE(std::isfinite(norm[k])) << dev[k];
      EXPECT_NEAR(norm[k], std::sqrt(test::sum_sq(r.grads)), 1e-6 * norm[k]) << dev[k] << ": reported norm";
      const double s = (clip > 0 && norm[k] > clip) ? double(float(clip / norm[k])) : 1.0;
      if (clip > 0) ASSERT_GT(norm[k], 2.0 * clip) << dev[k] << ": the test needs clipping to be active";
      std::vector<float> want(r.master.size());
      delta[k].resize(r.master.size());
      double dnorm = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double gs = double(r.grads[i]) * s;
        want[i] = float(-double(c.lr) * gs / (std::fabs(gs) + double(c.eps)));
        delta[k][i] = r.master[i] - r.init[i];
        dnorm += double(delta[k][i]) * delta[k][i];
      }
      EXPECT_LE(rel_l2(want, delta[k]), 1e-3) << dev[k] << " clip " << clip << ": update is not -lr g s / (|g s| + eps)";
      if (clip > 0)
        EXPECT_NEAR(std::sqrt(dnorm), double(c.lr) * clip, 2e-2 * double(c.lr) * clip)
            << dev[k] << ": ||update|| must be lr * clip";
    }
    EXPECT_NEAR(norm[1], norm[0], 5e-2 * norm[0]) << "grad norm cpu " << norm[0] << " cuda " << norm[1];
    EXPECT_LE(rel_l2(delta[0], delta[1]), 1e-1) << "clip " << clip << ": cuda update vs cpu update";
  }
}

// One rank: GradSync does not shard (nothing to shard over), so --zero 1 must train bit-identically
// to --zero 0.
TEST(CudaTrain, ZeroOneTrainsLikeZeroZero) {
  NEED_GPU();
  TrainConfig c = test::tiny_run(data_dir(), "");
  c.device = "cuda";
  c.steps = 4;
  const RunOut z0 = train("cuda", c);
  c.zero = 1;
  const RunOut z1 = train("cuda", c);
  EXPECT_EQ(z1.losses, z0.losses);
  expect_equal(z0.master, z1.master, "zero 1 vs zero 0 master");
  expect_equal(z0.copy, z1.copy, "zero 1 vs zero 0 bf16 copy");
}

// 6 steps straight == 3 steps, checkpoint, resume to 6: losses, master, bf16 copy bit for bit
// (deterministic kernels, no atomics; the checkpoint holds master, moments, step, loader position).
TEST(CudaTrain, ResumeIsBitExact) {
  NEED_GPU();
  for (int zero : {0, 1}) {
    const std::string z = "zero " + std::to_string(zero);
    TrainConfig c = test::tiny_run(data_dir(), "");
    c.device = "cuda";
    c.steps = 6;
    c.zero = zero;
    const RunOut full = train("cuda", c);
    ASSERT_EQ(full.losses.size(), 6u);

    TrainConfig first = c;
    first.ckpt_dir = ckpt_dir("resume" + std::to_string(zero));
    first.stop_at = 3;
    const RunOut p1 = train("cuda", first);
    EXPECT_TRUE(p1.res.stopped_early) << z;
    EXPECT_EQ(p1.res.final_step, 3) << z;
    TrainConfig second = first;
    second.stop_at = 0;
    second.resume = true;
    const RunOut p2 = train("cuda", second);
    EXPECT_EQ(p2.res.start_step, 3) << z;
    std::vector<double> joined = p1.losses;
    joined.insert(joined.end(), p2.losses.begin(), p2.losses.end());
    EXPECT_EQ(joined, full.losses) << z << ": losses of the interrupted + resumed run";
    expect_equal(full.master, p2.master, z + ": master after resume");
    expect_equal(full.copy, p2.copy, z + ": bf16 copy after resume");
    expect_copy_is_rounded_master(p2, z + " (resumed)");
  }
}

}  // namespace
}  // namespace mc
