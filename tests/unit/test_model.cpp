// Whole-model tests on the CPU ops: finite-difference gradients of every parameter tensor, the
// gradient-readiness contract backward reports to the bucket scheduler, the layout, and overfitting
// one batch.
#include <gtest/gtest.h>

#include <cmath>

#include "core/errors.h"
#include "core/rng.h"
#include "model/gpt2.h"
#include "ops/cpu/cpu_ops.h"
#include "../test_util.h"

using namespace mc;

namespace {
ModelConfig small_config() { return test::model_config(8, 40, 2, 2, 16); }
void random_tokens(std::vector<int>& v, int V, uint64_t seed) {
  Rng r(seed);
  for (auto& t : v) t = int(r.next() % uint64_t(V));
}
}  // namespace

TEST(Layout, CoversBufferInBackwardOrder) {
  ModelConfig c = model_preset("d12", 50257);
  EXPECT_EQ(c.padded_vocab_size, 50304);
  ParamLayout lay = make_layout(c);
  size_t off = 0;
  for (const auto& t : lay.tensors) {
    EXPECT_EQ(t.offset, off) << t.name;
    off += t.numel;
  }
  EXPECT_EQ(off, lay.total);
  // GPT-2 124M: 124,475,904 parameters with the padded vocabulary (llm.c's count).
  EXPECT_EQ(lay.total, 124475904u);
  EXPECT_EQ(lay.tensors.front().name, "wte");
  EXPECT_EQ(lay.tensors.back().name, "lnf.b");
  EXPECT_THROW(model_preset("d13", 256), UsageError);
}

TEST(Model, FiniteDifferenceGradients) {
  auto ops = make_cpu_ops();
  ModelConfig c = small_config();
  const int B = 2, T = 8;
  GPT2 model(c, *ops, B, T);
  const ParamLayout& lay = model.layout();
  std::vector<float> w = gpt2_init(c, lay, 7);
  // Larger weights than GPT-2's init make every path (attention, GELU) contribute visibly.
  for (auto& x : w) x *= 4.0f;
  for (const auto& t : lay.tensors)
    if (!t.decay)
      for (size_t i = 0; i < t.numel; ++i) w[t.offset + i] += 0.1f * std::sin(float(i + t.offset));
  model.set_params(w);
  std::vector<int> in(B * T), tg(B * T);
  random_tokens(in, c.vocab_size, 1);
  random_tokens(tg, c.vocab_size, 2);
  model.zero_grads();
  model.forward(in.data(), tg.data(), B, T, 1.0f);
  model.backward();
  std::vector<float> grad(lay.total);
  std::memcpy(grad.data(), model.grads(), lay.total * sizeof(float));

  Rng pick(3);
  int checked = 0;
  for (const auto& t : lay.tensors) {
    const size_t rows_in_use = t.name == "wte" ? size_t(c.vocab_size) * c.channels : t.numel;
    for (int k = 0; k < 6; ++k) {
      // wte: prefer entries of tokens that occur, so that the encoder path is exercised too
      size_t i = t.offset + (t.name == "wte" ? size_t(in[k]) * c.channels + pick.next() % c.channels
                                             : pick.next() % rows_in_use);
      const float eps = 1e-2f, keep = w[i];
      w[i] = keep + eps;
      model.set_params(w);
      const double lp = model.forward(in.data(), tg.data(), B, T);
      w[i] = keep - eps;
      model.set_params(w);
      const double lm = model.forward(in.data(), tg.data(), B, T);
      w[i] = keep;
      const double num = (lp - lm) / (2.0 * eps);
      EXPECT_NEAR(grad[i], num, 2e-3 + 3e-2 * std::fabs(num)) << t.name << " element " << i - t.offset;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(Model, ReadinessReportsFinalGradientsFromTheEnd) {
  auto ops = make_cpu_ops();
  ModelConfig c = small_config();
  const int B = 2, T = 8;
  GPT2 model(c, *ops, B, T);
  model.set_params(gpt2_init(c, model.layout(), 11));
  std::vector<int> in(B * T), tg(B * T);
  random_tokens(in, c.vocab_size, 4);
  random_tokens(tg, c.vocab_size, 5);
  const size_t n = model.num_params();
  // Snapshot the gradient at each report; afterwards the reported range must not have changed.
  std::vector<std::pair<size_t, std::vector<float>>> snaps;
  model.zero_grads();
  model.forward(in.data(), tg.data(), B, T, 1.0f);
  model.backward([&](size_t off) {
    snaps.emplace_back(off, std::vector<float>(model.grads() + off, model.grads() + n));
  });
  ASSERT_EQ(snaps.size(), size_t(c.num_layers) + 2);  // lnf, each layer, embeddings
  EXPECT_EQ(snaps.back().first, 0u);
  for (size_t s = 0; s < snaps.size(); ++s) {
    if (s > 0) EXPECT_LT(snaps[s].first, snaps[s - 1].first);
    const size_t off = snaps[s].first;
    for (size_t i = off; i < n; ++i) ASSERT_EQ(snaps[s].second[i - off], model.grads()[i]) << "report " << s;
  }
}

TEST(Model, OverfitsOneBatch) {
  auto ops = make_cpu_ops();
  ModelConfig c = small_config();
  c.channels = 32;
  const int B = 2, T = 8;
  GPT2 model(c, *ops, B, T);
  model.set_params(gpt2_init(c, model.layout(), 1));
  const size_t n = model.num_params();
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<int> in(B * T), tg(B * T);
  random_tokens(in, c.vocab_size, 8);
  random_tokens(tg, c.vocab_size, 9);
  double first = 0, last = 0;
  for (int step = 1; step <= 150; ++step) {
    model.zero_grads();
    last = model.forward(in.data(), tg.data(), B, T, 1.0f);
    if (step == 1) first = last;
    model.backward();
    AdamWParams hp;
    hp.lr = 1e-2f;
    hp.t = step;
    ops->adamw(model.params().f32(), Ptr(), m.data(), v.data(), model.grads(), n, hp);
  }
  EXPECT_NEAR(first, std::log(double(c.vocab_size)), 0.3);
  EXPECT_LT(last, 0.05) << "a tiny model must memorise one batch";
}
