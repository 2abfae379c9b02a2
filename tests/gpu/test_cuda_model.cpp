// A whole GPT-2 forward + backward on the CPU (fp32) and CUDA (bf16) backends from the same fp32
// initialisation: loss, gradient norm and the gradient vector agree within bf16 tolerance.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/rng.h"
#include "gpu_test_util.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "../test_util.h"

namespace mc {
namespace {

using test::rel_l2;

struct Result {
  double loss = 0, grad_norm = 0;
  std::vector<float> grads;
};

Result run(Ops& ops, const ModelConfig& cfg, const std::vector<float>& init, const std::vector<int>& in,
           const std::vector<int>& tg, int B, int T, int b, int t) {
  GPT2 model(cfg, ops, B, T);
  model.set_params(init);
  model.zero_grads();
  Result r;
  r.loss = model.forward(in.data(), tg.data(), b, t, 1.0f);
  model.backward();
  r.grad_norm = std::sqrt(ops.sum_squares(model.grads(), model.num_params()));
  r.grads.resize(model.num_params());
  ops.download(r.grads.data(), model.grads(), r.grads.size() * sizeof(float));
  return r;
}

ModelConfig config(int L, int NH, int C, int V, int T) { return test::model_config(T, V, L, NH, C); }

void compare(int L, int NH, int C, int V, int B, int T, int b, int t) {
  NEED_GPU();
  const ModelConfig cfg = config(L, NH, C, V, T);
  const std::vector<float> init = gpt2_init(cfg, make_layout(cfg), 1234);
  Rng rng(99);
  std::vector<int> in(size_t(b) * t), tg(size_t(b) * t);
  for (auto& x : in) x = int(rng.next() % uint64_t(V));
  for (auto& x : tg) x = int(rng.next() % uint64_t(V));
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  const Result a = run(*cpu, cfg, init, in, tg, B, T, b, t);
  const Result g = run(*gpu, cfg, init, in, tg, B, T, b, t);
  // Loss: bf16 activations through L layers, rel 1e-2. Gradient norm: rel 5e-2.
  EXPECT_NEAR(g.loss, a.loss, 1e-2 * a.loss) << "loss cpu " << a.loss << " cuda " << g.loss;
  EXPECT_NEAR(g.grad_norm, a.grad_norm, 5e-2 * a.grad_norm) << "grad norm cpu " << a.grad_norm << " cuda " << g.grad_norm;
  // The whole gradient vector: relative L2 error below 1e-1 (bf16 activation gradients).
  ASSERT_EQ(g.grads.size(), a.grads.size());
  EXPECT_LE(rel_l2(a.grads, g.grads), 1e-1) << "relative L2 error of the gradients";
}

// hs 32, full batch and sequence.
TEST(CudaModel, TinyMatchesCpu) { compare(2, 2, 64, 256, 2, 64, 2, 64); }
// hs 64, a smaller batch and a ragged sequence length than allocated.
TEST(CudaModel, PartialBatchMatchesCpu) { compare(2, 2, 128, 300, 3, 96, 2, 70); }
// d12 width (C 768, 12 heads of 64) with 2 layers, the GPT-2 vocabulary (50257, padded 50304) and the
// full context T = 1024, B = 2: every op at its real d12 shape except the depth. Same tolerances as
// above: they bound bf16 rounding (rel 2^-9 per stored activation) compounded over the ops of a few
// layers, which does not grow with width or length; the logits (std ~0.55 at init) and their
// softmax over 50257 classes stay well inside bf16's range. CPU cost: 6 x 2048 tokens x 52.8M
// parameters = 650 GFLOP of GEMMs + ~25 GFLOP of attention + 54M-parameter init, ~2-3 s on 16 cores.
TEST(CudaModel, D12WidthLarge) { compare(2, 12, 768, 50257, 2, 1024, 2, 1024); }

// Note [Invalid targets] (kernels/bad_target.h): a target outside [0, V) makes GPT2::forward throw the
// same RuntimeError on both backends (the CPU in crossentropy, the GPU at the loss read-back right
// after) instead of returning a NaN loss; the model trains on normally afterwards.
TEST(CudaModel, OutOfRangeTargetFailsLikeCpu) {
  NEED_GPU();
  const int B = 2, T = 32, V = 256;
  const ModelConfig cfg = config(2, 2, 64, V, T);
  const std::vector<float> init = gpt2_init(cfg, make_layout(cfg), 7);
  Rng rng(5);
  std::vector<int> in(size_t(B) * T), tg(size_t(B) * T);
  for (auto& x : in) x = int(rng.next() % uint64_t(V));
  for (auto& x : tg) x = int(rng.next() % uint64_t(V));
  std::vector<int> bad = tg;
  bad[37] = V;  // row 37 = batch 1, position 5
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  for (Ops* o : {cpu.get(), gpu.get()}) {
    GPT2 model(cfg, *o, B, T);
    model.set_params(init);
    for (float grad_scale : {0.0f, 1.0f}) {
      try {
        const double loss = model.forward(in.data(), bad.data(), B, T, grad_scale);
        ADD_FAILURE() << o->name() << ": no error for target " << V << ", loss " << loss;
      } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("target 256 at row 37 outside [0, 256)"), std::string::npos)
            << o->name() << ": " << e.what();
      }
      const double loss = model.forward(in.data(), tg.data(), B, T, grad_scale);
      EXPECT_TRUE(std::isfinite(loss)) << o->name();
      if (grad_scale > 0) EXPECT_NO_THROW(model.backward()) << o->name();
    }
  }
}

}  // namespace
}  // namespace mc
