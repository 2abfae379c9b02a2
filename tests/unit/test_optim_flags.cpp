// The AdamW flags (--beta1, --beta2, --eps, --weight-decay) reach the optimizer: two real training
// steps, checkpointed after each, are checked against the AdamW formula recomputed from the
// checkpoints' moments; --beta2 0.999 and 0.95 train differently; the flags are validated; the
// time-left estimate's format.
#include <gtest/gtest.h>

#include <cmath>

#include "../gtest_util.h"
#include "../test_util.h"
#include "core/errors.h"
#include "dist/comm.h"
#include "ops/cpu/cpu_ops.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace mc;

namespace {
struct TwoSteps {
  LoadedCheckpoint ck1, ck2;
  std::vector<ParamTensor> tensors;
};

// Two steps at a constant learning rate, no clipping, a checkpoint after each.
TwoSteps two_steps(const std::string& data, const std::string& ckpt_dir, float beta1, float beta2, float eps,
                   float wd) {
  TrainConfig c = test::tiny_run(data, ckpt_dir);
  c.steps = 2;
  c.warmup = 0;
  c.min_lr_frac = 1;  // lr stays c.lr
  c.grad_clip = 0;
  c.ckpt_every = 1;
  c.ckpt_keep = 0;
  c.val_seqs = 0;
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.eps = eps;
  c.weight_decay = wd;
  auto ops = make_cpu_ops();
  auto comm = make_single_communicator();
  Trainer t(plan_run(c), *comm, *ops);
  t.run();
  TwoSteps r;
  r.tensors = t.model().layout().tensors;
  r.ck1 = load_checkpoint(checkpoint_path(ckpt_dir, 1));
  r.ck2 = load_checkpoint(checkpoint_path(ckpt_dir, 2));
  return r;
}

class OptimFlags : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::scratch_dir("optim_flags"));
    data_ = new std::string(test::make_corpus(*dir_));
  }
  static std::string* dir_;
  static std::string* data_;
};
std::string* OptimFlags::dir_ = nullptr;
std::string* OptimFlags::data_ = nullptr;
}  // namespace

// From step 1's moments (m1 = (1-b1) g1, v1 = (1-b2) g1^2 from zero) the gradient g1 is recovered and
// v1 checked; from step 2's m2 the gradient g2, then v2 and the parameters after step 2 recomputed
// with bias correction, eps and decoupled weight decay on the 2-D weights only.
TEST_F(OptimFlags, ValuesReachAdamW) {
  const float b1 = 0.8f, b2 = 0.999f, eps = 1e-3f, wd = 0.5f, lr = 1e-3f;
  const TwoSteps r = two_steps(*data_, *dir_ + "/ck_formula", b1, b2, eps, wd);
  EXPECT_FLOAT_EQ(r.ck2.meta.at("config").at("beta1").get<float>(), b1);
  EXPECT_FLOAT_EQ(r.ck2.meta.at("config").at("beta2").get<float>(), b2);
  EXPECT_FLOAT_EQ(r.ck2.meta.at("config").at("eps").get<float>(), eps);
  EXPECT_FLOAT_EQ(r.ck2.meta.at("config").at("weight_decay").get<float>(), wd);
  const auto &p1 = r.ck1.get("params"), &m1 = r.ck1.get("adam_m"), &v1 = r.ck1.get("adam_v");
  const auto &p2 = r.ck2.get("params"), &m2 = r.ck2.get("adam_m"), &v2 = r.ck2.get("adam_v");
  const double c1 = 1.0 / (1.0 - double(b1) * b1), c2 = 1.0 / (1.0 - double(b2) * b2);  // t = 2
  size_t checked = 0, decayed = 0, big_g = 0;
  double worst_v1 = 0, worst_v2 = 0, worst_p = 0;
  for (const ParamTensor& t : r.tensors) {
    for (size_t i = t.offset; i < t.offset + t.numel; ++i) {
      const double g1 = m1[i] / (1.0 - b1);
      const double g2 = (m2[i] - double(b1) * m1[i]) / (1.0 - b1);
      const double want_v1 = (1.0 - b2) * g1 * g1;
      const double want_v2 = double(b2) * v1[i] + (1.0 - b2) * g2 * g2;
      const double w = t.decay ? wd : 0.0;
      const double want_p2 = p1[i] - lr * ((m2[i] * c1) / (std::sqrt(v2[i] * c2) + eps) + w * p1[i]);
      worst_v1 = std::max(worst_v1, std::abs(v1[i] - want_v1) / (std::abs(want_v1) + 1e-12));
      worst_v2 = std::max(worst_v2, std::abs(v2[i] - want_v2) / (std::abs(want_v2) + 1e-12));
      worst_p = std::max(worst_p, std::abs(p2[i] - want_p2));
      ++checked;
      decayed += t.decay;
      big_g += std::abs(g2) > 1e-4;
    }
  }
  EXPECT_GT(checked, 1000u);
  EXPECT_GT(decayed, 100u);
  EXPECT_GT(big_g, 100u);  // gradients of the size where beta2 and eps matter
  EXPECT_LT(worst_v1, 1e-3) << "v after step 1 is not (1 - beta2) g^2";
  EXPECT_LT(worst_v2, 1e-3) << "v after step 2 is not beta2 v1 + (1 - beta2) g^2";
  EXPECT_LT(worst_p, 1e-6) << "parameters after step 2 do not follow AdamW with these flags";
}

// llm.c's beta2 (0.999) against ours (0.95): the same first step (at t = 1 Adam's update is g/|g| for
// any beta), different parameters after the second.
TEST_F(OptimFlags, Beta2ChangesTraining) {
  const TwoSteps a = two_steps(*data_, *dir_ + "/ck_095", 0.9f, 0.95f, 1e-8f, 0.1f);
  const TwoSteps b = two_steps(*data_, *dir_ + "/ck_0999", 0.9f, 0.999f, 1e-8f, 0.1f);
  auto max_diff = [](const std::vector<float>& x, const std::vector<float>& y) {
    double d = 0;
    for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(double(x[i]) - y[i]));
    return d;
  };
  // Equal up to rounding after step 1 (the update is lr = 1e-3 times about +-1 per parameter) ...
  EXPECT_LT(max_diff(a.ck1.get("params"), b.ck1.get("params")), 1e-8);
  EXPECT_EQ(a.ck1.get("adam_m"), b.ck1.get("adam_m"));
  // ... and well apart after step 2, where v = b2 v1 + (1 - b2) g2^2 weighs the two gradients differently.
  EXPECT_GT(max_diff(a.ck2.get("params"), b.ck2.get("params")), 2e-6);
  const auto &pa = a.ck2.get("params"), &pb = b.ck2.get("params");
  size_t differ = 0;
  for (size_t i = 0; i < pa.size(); ++i) differ += std::abs(double(pa[i]) - pb[i]) > 1e-7;
  EXPECT_GT(differ, pa.size() / 2) << "step 1 max diff " << max_diff(a.ck1.get("params"), b.ck1.get("params"));
}

TEST_F(OptimFlags, Validated) {
  auto expect_bad = [&](const std::string& flag, auto set) {
    TrainConfig c = test::tiny_run(*data_, "");
    set(c);
    SCOPED_TRACE(flag);
    test::expect_usage([&] { plan_run(c); }, {flag + " "});
  };
  expect_bad("--beta1", [](TrainConfig& c) { c.beta1 = 1; });
  expect_bad("--beta1", [](TrainConfig& c) { c.beta1 = -0.1f; });
  expect_bad("--beta1", [](TrainConfig& c) { c.beta1 = NAN; });
  expect_bad("--beta2", [](TrainConfig& c) { c.beta2 = 1.5f; });
  expect_bad("--beta2", [](TrainConfig& c) { c.beta2 = NAN; });
  expect_bad("--eps", [](TrainConfig& c) { c.eps = 0; });
  expect_bad("--eps", [](TrainConfig& c) { c.eps = -1e-8f; });
  expect_bad("--eps", [](TrainConfig& c) { c.eps = INFINITY; });
  expect_bad("--eps", [](TrainConfig& c) { c.eps = NAN; });
  expect_bad("--weight-decay", [](TrainConfig& c) { c.weight_decay = -0.1f; });
  expect_bad("--weight-decay", [](TrainConfig& c) { c.weight_decay = INFINITY; });
  expect_bad("--weight-decay", [](TrainConfig& c) { c.weight_decay = NAN; });
  expect_bad("--grad-clip", [](TrainConfig& c) { c.grad_clip = NAN; });  // NaN would silently turn clipping off
  expect_bad("--grad-clip", [](TrainConfig& c) { c.grad_clip = INFINITY; });
  expect_bad("--tokenizer", [](TrainConfig& c) { c.tokenizer = "nope"; });
  expect_bad("--tokenizer", [](TrainConfig& c) { c.tokenizer = "gpt2"; });  // the corpus is byte-level
  TrainConfig ok = test::tiny_run(*data_, "");
  ok.beta1 = 0;
  ok.beta2 = 0.999f;
  ok.tokenizer = "byte";
  EXPECT_EQ(plan_run(ok).cfg.tokenizer, "byte");
  ok.tokenizer = "";  // resolved to the data's
  EXPECT_EQ(plan_run(ok).cfg.tokenizer, "byte");
}

// A checkpoint's "config" is input (Note [Changed hyperparameters on resume]): a value out of float's
// range is reported as it is, one that is not a number is not compared, and the run resumes either way.
TEST_F(OptimFlags, ResumeWarnsOnHostileConfig) {
  const std::string ck = *dir_ + "/ck_hostile";
  TrainConfig c = test::tiny_run(*data_, ck);
  c.steps = 1;
  c.ckpt_every = 1;
  {
    auto ops = make_cpu_ops();
    auto comm = make_single_communicator();
    Trainer(plan_run(c), *comm, *ops).run();
  }
  const std::string path = checkpoint_path(ck, 1);
  LoadedCheckpoint f = load_checkpoint_file(path);
  f.meta["config"]["beta2"] = 1e300;
  f.meta["config"]["eps"] = "small";
  std::vector<CheckpointTensor> tensors;
  for (size_t i = 0; i < f.names.size(); ++i) tensors.push_back({f.names[i], f.tensors[i].data(), f.tensors[i].size()});
  write_checkpoint_raw(path, f.meta.dump(), tensors);

  c.steps = 2;
  c.resume = true;
  c.quiet = false;
  auto ops = make_cpu_ops();
  auto comm = make_single_communicator();
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  TrainResult r;
  try {
    r = Trainer(plan_run(c), *comm, *ops).run();
  } catch (...) {
    testing::internal::GetCapturedStdout();
    ADD_FAILURE() << testing::internal::GetCapturedStderr();
    throw;
  }
  testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.start_step, 1);
  EXPECT_EQ(r.final_step, 2);
  EXPECT_NE(err.find("--beta2 is 0.95; the checkpoint was trained with 1e+300"), std::string::npos) << err;
  EXPECT_EQ(err.find("--eps"), std::string::npos) << err;
}

TEST(FormatDuration, Units) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(42.4), "42s");
  EXPECT_EQ(format_duration(59.6), "1m00s");
  EXPECT_EQ(format_duration(200), "3m20s");
  EXPECT_EQ(format_duration(3599.7), "1h00m");
  EXPECT_EQ(format_duration(2 * 3600 + 5 * 60), "2h05m");
  EXPECT_EQ(format_duration(3 * 86400 + 4 * 3600 + 100), "3d04h");
  EXPECT_EQ(format_duration(-5), "0s");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_duration(INFINITY), "?");
  EXPECT_EQ(format_duration(1e300), "?");  // not llround's overflow
  EXPECT_EQ(format_duration(1e9), "11574d02h");
}
