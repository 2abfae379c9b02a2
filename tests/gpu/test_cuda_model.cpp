// A whole GPT-2 forward + backward on the CPU (fp32) and CUDA (bf16) backends from the same fp32
// initialisation: loss, gradient norm and the gradient vector agree within bf16 tolerance.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

namespace mc {
namespace {

struct Result {
  double loss = 0, grad_norm = 0;
  std::vector<float> grads;
};

Result run(Ops& ops, const ModelConfig& cfg, const std::vector<int>& in, const std::vector<int>& tg, int B, int T,
           int b, int t) {
  GPT2 model(cfg, ops, B, T);
  model.set_params(gpt2_init(cfg, model.layout(), 1234));
  model.zero_grads();
  Result r;
  r.loss = model.forward(in.data(), tg.data(), b, t, 1.0f);
  model.backward();
  r.grad_norm = std::sqrt(ops.sum_squares(model.grads(), model.num_params()));
  r.grads.resize(model.num_params());
  ops.download(r.grads.data(), model.grads(), r.grads.size() * sizeof(float));
  return r;
}

void compare(int L, int NH, int C, int V, int B, int T, int b, int t) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU";
  ModelConfig cfg;
  cfg.max_seq_len = T;
  cfg.vocab_size = V;
  cfg.padded_vocab_size = pad_vocab(V);
  cfg.num_layers = L;
  cfg.num_heads = NH;
  cfg.channels = C;
  Rng rng(99);
  std::vector<int> in(size_t(b) * t), tg(size_t(b) * t);
  for (auto& x : in) x = int(rng.next() % uint64_t(V));
  for (auto& x : tg) x = int(rng.next() % uint64_t(V));
  auto cpu = make_cpu_ops();
  auto gpu = make_ops("cuda", 0);
  const Result a = run(*cpu, cfg, in, tg, B, T, b, t);
  const Result g = run(*gpu, cfg, in, tg, B, T, b, t);
  // Loss: bf16 activations through L layers, rel 1e-2. Gradient norm: rel 5e-2.
  EXPECT_NEAR(g.loss, a.loss, 1e-2 * a.loss) << "loss cpu " << a.loss << " cuda " << g.loss;
  EXPECT_NEAR(g.grad_norm, a.grad_norm, 5e-2 * a.grad_norm) << "grad norm cpu " << a.grad_norm << " cuda " << g.grad_norm;
  // The whole gradient vector: relative L2 error below 1e-1 (bf16 activation gradients).
  double num = 0, den = 0;
  for (size_t i = 0; i < a.grads.size(); ++i) {
    const double d = double(g.grads[i]) - a.grads[i];
    num += d * d;
    den += double(a.grads[i]) * a.grads[i];
  }
  EXPECT_LE(std::sqrt(num / den), 1e-1) << "relative L2 error of the gradients";
}

// hs 32, full batch and sequence.
TEST(CudaModel, TinyMatchesCpu) { compare(2, 2, 64, 256, 2, 64, 2, 64); }
// hs 64, a smaller batch and a ragged sequence length than allocated.
TEST(CudaModel, PartialBatchMatchesCpu) { compare(2, 2, 128, 300, 3, 96, 2, 70); }

}  // namespace
}  // namespace mc
