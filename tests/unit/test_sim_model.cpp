// The simulator's step, memory and failure model (src/sim/model.h) against closed forms: no overlap is
// compute + communication, overlap cannot hide more than backward, Young's interval, Daly's goodput in
// its limits, memory by ZeRO stage, and a calibration that recovers the efficiencies it was made from.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../gtest_util.h"
#include "sim/model.h"

namespace mc::sim {
namespace {

// A profile with round numbers and no fixed costs, so that closed forms hold exactly.
Hardware plain() {
  Hardware hw = builtin_hardware("h100");
  hw.peak_flops = 1e15;
  hw.matmul_eff = 0.5;
  hw.mem_bw = 2e12;
  hw.mem_eff = 0.5;
  hw.micro_step_overhead_s = 0;
  hw.collective_launch_s = 0;
  hw.overlap_slowdown = 0;
  hw.nvls_bw = 0;
  return hw;
}

SimConfig d12(int B = 8, int T = 1024) {
  SimConfig c;
  c.model = model_preset("d12", 50257);
  c.B = B;
  c.T = T;
  c.algo = Algo::Ring;
  return c;
}

TEST(SimModel, OneDeviceHasNoCommunication) {
  const Timeline t = simulate_step(d12(), plain(), 1);
  EXPECT_EQ(t.comm_s, 0);
  EXPECT_EQ(t.exposed_s, 0);
  EXPECT_DOUBLE_EQ(t.step_s, t.compute_s + t.optimizer_s);
  const auto rows = simulate(d12(), plain(), {1});
  EXPECT_DOUBLE_EQ(rows[0].efficiency, 1.0);
}

TEST(SimModel, ForwardIsOneThirdOfTheFlops) {
  Hardware hw = plain();
  hw.mem_bw = 1e300;  // FLOPs only
  const SimConfig c = d12(4, 512);
  const MicroStep m = micro_step(c, hw, 1);
  const double flops = flops_per_token(c.model, c.T) * c.B * c.T;
  EXPECT_NEAR(m.forward_s, flops / 3 / (hw.peak_flops * hw.matmul_eff), 1e-12);
  EXPECT_NEAR(m.backward_s(), 2 * flops / 3 / (hw.peak_flops * hw.matmul_eff), 1e-12);
  // Segments: classifier+lnf, 12 layers, embeddings; readiness strictly towards the start, last at 0.
  ASSERT_EQ(m.backward.size(), size_t(c.model.num_layers + 2));
  for (size_t k = 1; k < m.backward.size(); ++k) EXPECT_LT(m.backward[k].ready_from, m.backward[k - 1].ready_from);
  EXPECT_EQ(m.backward.back().ready_from, 0u);
}

TEST(SimModel, NoOverlapIsComputePlusCommunication) {
  SimConfig c = d12();
  c.overlap = false;
  for (int n : {2, 8, 64, 4096}) {
    const Timeline t = simulate_step(c, plain(), n);
    EXPECT_GT(t.comm_s, 0);
    EXPECT_NEAR(t.exposed_s, t.comm_s, 1e-12 * t.comm_s) << n;
    EXPECT_NEAR(t.step_s, t.compute_s + t.comm_s + t.optimizer_s, 1e-12 * t.step_s) << n;
    // The communication is the sum of one all-reduce per bucket.
    const double bucket_bytes = 25.0 * 1024 * 1024, total = 4.0 * make_layout(c.model).total;
    const int full = int(total / bucket_bytes);
    const double expect = full * all_reduce(plain(), bucket_bytes, n, Algo::Ring).seconds +
                          all_reduce(plain(), total - full * bucket_bytes, n, Algo::Ring).seconds;
    EXPECT_NEAR(t.comm_s, expect, 1e-9 * expect) << n;
  }
}

TEST(SimModel, OverlapIsBoundedByBackwardAndTheLastBucket) {
  for (double mb : {1.0, 8.0, 25.0, 100.0}) {
    for (int n : {2, 8, 512, 100000}) {
      SimConfig c = d12();
      c.bucket_mb = mb;
      const Timeline on = simulate_step(c, plain(), n);
      c.overlap = false;
      const Timeline off = simulate_step(c, plain(), n);
      const double bwd = micro_step(c, plain(), std::min(n, 8)).backward_s();
      EXPECT_NEAR(on.comm_s, off.comm_s, 1e-12 * on.comm_s);
      EXPECT_LE(on.exposed_s, off.exposed_s + 1e-15);
      EXPECT_GE(on.exposed_s, on.comm_s - bwd - 1e-12) << "overlap cannot hide more than backward";
      // The bucket holding offset 0 (wte's start) is ready only when backward ends: always exposed.
      const size_t n_params = make_layout(c.model).total, elems = size_t(mb * 1024 * 1024 / 4);
      const size_t last = n_params % elems ? n_params % elems : elems;
      EXPECT_GE(on.exposed_s, all_reduce(plain(), 4.0 * std::min(last, n_params), n, Algo::Ring).seconds - 1e-12);
    }
  }
}

// Note [CPU overlap]: backward grows by slowdown x (communication overlapped) + preempt x (wake-ups), and a bucket
// launched while the previous one is in flight wakes nothing.
TEST(SimModel, CpuOverlapCostsTransfersAndWakeups) {
  SimConfig c = d12(2, 256);
  c.bucket_mb = 1;  // a layer of d12 is ~27 MiB of gradients: many buckets ready at once
  const Timeline free = simulate_step(c, plain(), 2);
  Hardware hw = plain();
  hw.overlap_slowdown = 1;
  hw.overlap_preempt_s = 5e-3;
  const Timeline t = simulate_step(c, hw, 2);
  EXPECT_GT(t.wakeups, 0);
  EXPECT_LT(t.wakeups, t.overlapped_buckets);
  EXPECT_NEAR(t.compute_s - free.compute_s, t.overlapped_s + 5e-3 * t.wakeups, 1e-12);
  EXPECT_NEAR(free.compute_s, micro_step(c, plain(), 2).forward_s + micro_step(c, plain(), 2).backward_s(), 1e-15);
  c.overlap = false;  // nothing overlaps, nothing slows
  EXPECT_NEAR(simulate_step(c, hw, 2).compute_s, free.compute_s, 1e-15);
}

TEST(SimModel, GradientAccumulationScalesComputeNotCommunication) {
  SimConfig c = d12();
  const Timeline one = simulate_step(c, plain(), 64);
  c.grad_accum = 4;
  const Timeline four = simulate_step(c, plain(), 64);
  EXPECT_NEAR(four.compute_s, 4 * one.compute_s, 1e-12);
  EXPECT_NEAR(four.comm_s, one.comm_s, 1e-15);
}

TEST(SimModel, ZeroOneReduceScattersHalfTheRingTraffic) {
  SimConfig c = d12();
  c.overlap = false;
  const Timeline z0 = simulate_step(c, plain(), 8);
  c.zero = 1;
  const Timeline z1 = simulate_step(c, plain(), 8);
  EXPECT_NEAR(z1.comm_s, z0.comm_s / 2, 1e-9 * z0.comm_s);
  const double P = double(make_layout(c.model).total);
  EXPECT_GT(z1.optimizer_s, all_gather(plain(), 4 * P, 8, Algo::Ring).seconds);  // plus the all-gather
}

TEST(SimModel, MemoryByZeroStage) {
  const Hardware hw = plain();  // bf16 activations and compute copy, fp32 master
  SimConfig c = d12(16, 1024);
  const double P = double(make_layout(c.model).total);
  const int n = 8;
  const Memory m0 = memory_per_device(c, hw, n);
  EXPECT_DOUBLE_EQ(m0.params, 2 * P);
  EXPECT_DOUBLE_EQ(m0.grads, 4 * P);
  EXPECT_DOUBLE_EQ(m0.optimizer, 12 * P);
  EXPECT_DOUBLE_EQ(m0.activations, GPT2::memory_bytes(c.model, 16, 1024, DType::BF16) -
                                       GPT2::memory_bytes(c.model, 0, 0, DType::BF16));
  c.zero = 1;  // the trainer's ZeRO-1: m and v sharded, the fp32 master kept whole
  EXPECT_DOUBLE_EQ(memory_per_device(c, hw, n).optimizer, 8 * P / n + 4 * P);
  c.zero = 2;
  EXPECT_DOUBLE_EQ(memory_per_device(c, hw, n).optimizer, 12 * P / n);
  EXPECT_DOUBLE_EQ(memory_per_device(c, hw, n).grads, 4 * P / n);
  c.zero = 3;
  EXPECT_DOUBLE_EQ(memory_per_device(c, hw, n).params, 2 * P / n);
  // Activations grow linearly in B*T.
  SimConfig big = d12(32, 1024);
  EXPECT_NEAR(memory_per_device(big, hw, 1).activations, 2 * m0.activations, 1e-9 * m0.activations);
}

TEST(SimModel, YoungAndDaly) {
  EXPECT_DOUBLE_EQ(young_interval_s(60, 3600), std::sqrt(2.0 * 60 * 3600));
  // Daly's interval approaches Young's when the checkpoint is cheap compared with the MTBF.
  EXPECT_NEAR(daly_interval_s(1, 1e8) / young_interval_s(1, 1e8), 1.0, 1e-3);
  EXPECT_EQ(daly_interval_s(5000, 2000), 2000);  // delta >= 2M: checkpoint every M
  // Goodput: no failures -> tau / (tau + delta); the closed form otherwise; the optimum is optimal.
  EXPECT_NEAR(goodput(600, 60, 300, 1e30), 600.0 / 660, 1e-9);
  const double M = 3 * 3600, d = 60, R = 600, tau = daly_interval_s(d, M);
  EXPECT_NEAR(goodput(tau, d, R, M), tau / (M * std::exp(R / M) * (std::exp((tau + d) / M) - 1)), 1e-12);
  EXPECT_GT(goodput(tau, d, R, M), goodput(tau / 2, d, R, M));
  EXPECT_GT(goodput(tau, d, R, M), goodput(tau * 2, d, R, M));
  EXPECT_LT(goodput(tau, d, R, M), 1.0);
}

TEST(SimModel, FailuresGrowWithTheJob) {
  const auto rows = simulate(d12(), builtin_hardware("h100"), {16384, 100000});
  // Llama 3: 419 interruptions in 54 days on 16,384 GPUs -> one every ~3.1 hours.
  EXPECT_NEAR(rows[0].mtbf_s / 3600, 54.0 * 24 / 419, 1e-6);
  EXPECT_LT(rows[1].goodput, rows[0].goodput);
  EXPECT_LT(rows[1].ckpt_interval_s, rows[0].ckpt_interval_s);
}

TEST(SimModel, CriticalBatchFromKaplan) {
  // d12 without embeddings: 12 * (12 C^2 + 13 C) + 2 C with C = 768.
  const double N = 12.0 * (12.0 * 768 * 768 + 13 * 768) + 2 * 768;
  const double loss = std::pow(8.8e13 / N, 0.076);
  EXPECT_NEAR(critical_batch_tokens(model_preset("d12", 50257)), 2e8 / std::pow(loss, 1 / 0.21), 1.0);
  // Beyond it, the tokens to the same loss grow, so time to it stops falling.
  const auto rows = simulate(d12(), plain(), {1, 1 << 20});
  EXPECT_GT(rows[1].time_to_same_loss_s, rows[1].time_to_tokens_s);
}

TEST(SimModel, CalibrationRecoversTheEfficiencies) {
  const std::string dir = test::test_scratch("sim");
  Hardware truth = builtin_hardware("cpu");
  truth.matmul_eff = 0.37;
  truth.mem_eff = 0.21;
  truth.micro_step_overhead_s = 0.002;
  SimConfig c;
  c.model = model_preset("d6", 256);
  c.B = 2;
  c.T = 256;
  c.grad_accum = 2;
  const Timeline t = simulate_step(c, truth, 1);
  const ParamLayout lay = make_layout(c.model);
  {
    std::ofstream f(dir + "/m.jsonl");
    for (int s = 1; s <= 6; ++s) {
      nlohmann::json j = {{"step", s}, {"ranks", 1}, {"data_ms", 1e3 * c.grad_accum * truth.micro_step_overhead_s},
                          {"fwd_bwd_ms", 1e3 * (t.compute_s - c.grad_accum * truth.micro_step_overhead_s)},
                          {"opt_ms", 1e3 * t.optimizer_s}, {"ms", 1e3 * t.step_s}, {"batch", c.B}, {"seq", c.T},
                          {"grad_accum", c.grad_accum}, {"layers", 6}, {"heads", 6}, {"channels", 384}, {"vocab", 256},
                          {"padded_vocab", 256}, {"max_seq_len", 1024}, {"params", lay.total}, {"omp_threads", 1}};
      f << j.dump() << "\n";
    }
  }
  Hardware hw = builtin_hardware("cpu");
  hw.matmul_eff = 0.9;
  hw.mem_eff = 0.9;
  const std::string line = calibrate_compute(hw, {dir + "/m.jsonl"});
  EXPECT_NEAR(hw.matmul_eff, 0.37, 1e-9) << line;
  EXPECT_NEAR(hw.mem_eff, 0.21, 1e-9);
  EXPECT_NEAR(hw.micro_step_overhead_s, 0.002, 1e-12);
  EXPECT_NEAR(simulate_step(c, hw, 1).step_s, t.step_s, 1e-9 * t.step_s);
}

TEST(SimModel, CalibrationRefusesOtherFiles) {
  const std::string dir = test::test_scratch("sim");
  Hardware hw = builtin_hardware("cpu");
  std::ofstream(dir + "/bad.jsonl") << "{\"step\": 1, \"loss\": 3.0}\n";
  test::expect_usage([&] { calibrate_compute(hw, {dir + "/bad.jsonl"}); }, {dir + "/bad.jsonl", "records step phases"});
  std::ofstream(dir + "/text.jsonl") << "hello\n";
  test::expect_usage([&] { calibrate_compute(hw, {dir + "/text.jsonl"}); }, {"text.jsonl", "line 1", "not JSON"});
  std::ofstream(dir + "/empty.jsonl");
  test::expect_usage([&] { calibrate_compute(hw, {dir + "/empty.jsonl"}); }, {"empty.jsonl", "no 1-rank steps"});
  test::expect_usage([&] { calibrate_compute(hw, {dir + "/missing.jsonl"}); }, {"missing.jsonl"});
  {
    nlohmann::json j = {{"step", 3},  {"ranks", 1},  {"data_ms", 0.1}, {"fwd_bwd_ms", 400}, {"opt_ms", 10},
                        {"batch", 1e12}, {"seq", 256}, {"grad_accum", 1}, {"layers", 6}, {"heads", 6},
                        {"channels", 384}, {"vocab", 256}, {"padded_vocab", 256}, {"max_seq_len", 1024}};
    std::ofstream(dir + "/huge.jsonl") << j.dump() << "\n";
    test::expect_usage([&] { calibrate_compute(hw, {dir + "/huge.jsonl"}); }, {"huge.jsonl", "'batch'"});
    j["batch"] = 2;
    j["seq"] = 4096;  // longer than the model's context
    std::ofstream(dir + "/long.jsonl") << j.dump() << "\n";
    test::expect_usage([&] { calibrate_compute(hw, {dir + "/long.jsonl"}); }, {"long.jsonl", "impossible run"});
  }
  test::expect_usage([&] { calibrate_compute(hw, {dir}); }, {dir});
}

}  // namespace
}  // namespace mc::sim
