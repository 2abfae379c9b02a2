// Data parallelism under mpirun (2 and 4 ranks): N ranks train like 1 rank accumulating N
// micro-batches, with and without ZeRO-1; 4 ranks like 2 ranks accumulating 2; checkpoints resume on
// another world size; the bucket plan is identical everywhere; ranks with different flags are refused;
// on a GPU (skipped without one), ranks sharing it through staged MPI train ZeRO-1 like ZeRO-0.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>

#include "../test_util.h"
#include "dist/backends.h"
#include "dist/comm_mpi.h"
#include "dist/grad_sync.h"
#include "model/llmc_io.h"
#include "ops/cpu/cpu_ops.h"
#include "train/trainer.h"

using namespace mc;

namespace {
int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Rank 0 prepares the corpus once; every rank gets the same path.
std::string shared_data() {
  static std::string path;
  if (!path.empty()) return path;
  char buf[512] = {0};
  if (world_rank() == 0) {
    const std::string d = test::scratch_dir("dp");
    std::strncpy(buf, test::make_corpus(d).c_str(), sizeof(buf) - 1);
  }
  MPI_Bcast(buf, sizeof(buf), MPI_CHAR, 0, MPI_COMM_WORLD);
  path = buf;
  return path;
}
std::string shared_dir(const std::string& tag) { return shared_data() + "/../" + tag; }

struct Result {
  std::vector<double> losses;
  std::vector<float> params;
  TrainResult res;
};

// Trains on communicator `comm` (all its ranks must call), on the ops of c.device: for "cuda", MPI
// staged through host memory, as --comm mpi does for device ops (ranks may share one GPU).
Result train_plan(MPI_Comm comm, const RunPlan& plan, std::vector<float>* compute_copy = nullptr) {
  const TrainConfig& c = plan.cfg;
  auto ops = c.device == "cuda" ? make_ops("cuda", world_rank()) : make_cpu_ops();
  auto cm = ops->on_device() ? make_staged_communicator(make_mpi_communicator(comm), *ops) : make_mpi_communicator(comm);
  Trainer t(plan, *cm, *ops);
  Result r;
  r.res = t.run();
  for (const auto& s : r.res.steps) r.losses.push_back(s.loss);
  r.params = t.master_params();
  if (compute_copy) *compute_copy = t.model().get_params();
  return r;
}
Result train_on(MPI_Comm comm, const TrainConfig& c, std::vector<float>* compute_copy = nullptr) {
  return train_plan(comm, plan_run(c), compute_copy);
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]) / std::fabs(b[i]));
  return m;
}
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

TrainConfig base(const std::string& ckpt_dir) {
  TrainConfig c = test::tiny_run(shared_data(), ckpt_dir);
  c.steps = 5;
  c.batch = 2;
  c.bucket_mb = 0.25;  // several buckets even for the tiny model
  return c;
}
}  // namespace

TEST(DataParallel, NRanksEqualOneRankAccumulatingN) {
  const int N = world_size();
  TrainConfig c = base("");
  Result dp = train_on(MPI_COMM_WORLD, c);
  TrainConfig z = c;
  z.zero = 1;
  Result zero = train_on(MPI_COMM_WORLD, z);
  if (world_rank() == 0) {
    TrainConfig one = c;
    one.grad_accum = N;
    Result ref = train_on(MPI_COMM_SELF, one);
    const double d_dp = max_rel_diff(dp.losses, ref.losses), d_zero = max_rel_diff(zero.losses, ref.losses);
    std::printf("[ equiv ] %d ranks vs 1 rank x accum %d: max rel loss diff plain %.3g, zero-1 %.3g; "
                "max abs param diff plain %.3g, zero-1 %.3g\n",
                N, N, d_dp, d_zero, max_abs_diff(dp.params, ref.params), max_abs_diff(zero.params, ref.params));
    EXPECT_LT(d_dp, 1e-4);
    EXPECT_LT(d_zero, 1e-4);
    EXPECT_LT(max_abs_diff(dp.params, ref.params), 1e-4);
    EXPECT_LT(max_abs_diff(zero.params, ref.params), 1e-4);
    EXPECT_LT(ref.losses.back(), ref.losses.front());
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(DataParallel, FourRanksEqualTwoRanksAccumulatingTwo) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 ranks";
  TrainConfig c = base("");
  Result four = train_on(MPI_COMM_WORLD, c);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < 2 ? 0 : 1, world_rank(), &half);
  if (world_rank() < 2) {
    TrainConfig two = c;
    two.grad_accum = 2;
    two.zero = 1;  // and ZeRO-1 on the smaller world, for good measure
    Result r = train_on(half, two);
    const double d = max_rel_diff(four.losses, r.losses);
    if (world_rank() == 0) std::printf("[ equiv ] 4 ranks vs 2 ranks x accum 2 (zero-1): max rel loss diff %.3g\n", d);
    EXPECT_LT(d, 1e-4);
  }
  MPI_Comm_free(&half);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(DataParallel, SameWorldSizeResumeIsBitExact) {
  for (int zero : {0, 1}) {
    const std::string dir = shared_dir("bitexact" + std::to_string(zero));
    TrainConfig c = base("");
    c.zero = zero;
    Result full = train_on(MPI_COMM_WORLD, c);
    TrainConfig a = base(dir);
    a.zero = zero;
    a.stop_at = 2;
    Result p1 = train_on(MPI_COMM_WORLD, a);
    TrainConfig b = a;
    b.stop_at = 0;
    b.resume = true;
    Result p2 = train_on(MPI_COMM_WORLD, b);
    std::vector<double> joined = p1.losses;
    joined.insert(joined.end(), p2.losses.begin(), p2.losses.end());
    EXPECT_EQ(joined, full.losses) << "zero " << zero;
    EXPECT_EQ(p2.params, full.params) << "zero " << zero;
  }
}

TEST(DataParallel, ResumeOnAnotherWorldSize) {
  const int N = world_size();
  TrainConfig c = base("");
  Result full = train_on(MPI_COMM_WORLD, c);  // the uninterrupted N-rank run
  // Saved on N ranks with ZeRO-1, resumed on 1 rank accumulating N.
  const std::string dir = shared_dir("resize_down");
  TrainConfig a = base(dir);
  a.zero = 1;
  a.stop_at = 2;
  train_on(MPI_COMM_WORLD, a);
  if (world_rank() == 0) {
    TrainConfig b = base(dir);
    b.grad_accum = N;
    b.resume = true;
    Result r = train_on(MPI_COMM_SELF, b);
    ASSERT_EQ(r.res.start_step, 2);
    std::vector<double> tail(full.losses.begin() + 2, full.losses.end());
    const double d = max_rel_diff(r.losses, tail);
    std::printf("[ resume ] saved on %d ranks (zero-1), resumed on 1 x accum %d: max rel loss diff %.3g\n", N, N, d);
    EXPECT_LT(d, 1e-4);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // Saved on 1 rank accumulating N, resumed on N ranks (plain).
  const std::string dir2 = shared_dir("resize_up");
  if (world_rank() == 0) {
    TrainConfig a1 = base(dir2);
    a1.grad_accum = N;
    a1.stop_at = 3;
    train_on(MPI_COMM_SELF, a1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  TrainConfig b2 = base(dir2);
  b2.resume = true;
  Result r2 = train_on(MPI_COMM_WORLD, b2);
  ASSERT_EQ(r2.res.start_step, 3);
  std::vector<double> tail2(full.losses.begin() + 3, full.losses.end());
  const double d2 = max_rel_diff(r2.losses, tail2);
  if (world_rank() == 0) std::printf("[ resume ] saved on 1 rank x accum %d, resumed on %d ranks: max rel loss diff %.3g\n", N, N, d2);
  EXPECT_LT(d2, 1e-4);
}

TEST(DataParallel, BucketPlanIsIdenticalAndCoversOnce) {
  for (size_t n : {size_t(1), size_t(1000), size_t(123457), size_t(5000000)}) {
    for (size_t be : {size_t(1), size_t(4096), size_t(1) << 20}) {
      auto plan = make_bucket_plan(n, be);
      // covers [0, n) exactly once, from the end towards the start
      size_t expect_end = n;
      uint64_t h = 1469598103934665603ull;
      for (const auto& b : plan) {
        ASSERT_EQ(b.end, expect_end);
        ASSERT_LT(b.begin, b.end);
        ASSERT_LE(b.end - b.begin, be);
        expect_end = b.begin;
        h = (h ^ b.begin) * 1099511628211ull;
      }
      ASSERT_EQ(expect_end, 0u);
      unsigned long long mine = h, lo, hi;
      MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
      EXPECT_EQ(lo, hi) << "bucket plan differs between ranks for n=" << n;
    }
  }
}

TEST(DataParallel, RanksWithDifferentFlagsAreRefused) {
  TrainConfig c = base("");
  if (world_rank() == 1) c.lr *= 2;  // one rank launched with another --lr
  try {
    train_on(MPI_COMM_WORLD, c);
    FAIL() << "mismatch not detected";
  } catch (const AgreedError& e) {
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos);
  }
}

namespace {
// CPU ops that claim to live on a device, so the factory wraps MPI in host staging exactly as it
// does for several ranks sharing one GPU. Every call forwards to the real CPU ops.
class PretendDeviceOps final : public Ops {
 public:
  PretendDeviceOps() : cpu_(make_cpu_ops()) {}
  std::string name() const override { return "pretend-device"; }
  bool on_device() const override { return true; }
  DType act_dtype() const override { return cpu_->act_dtype(); }
  void* alloc(size_t n) override { return cpu_->alloc(n); }
  void free(void* p) override { cpu_->free(p); }
  void zero(void* p, size_t n) override { cpu_->zero(p, n); }
  void upload(void* d, const void* s, size_t n) override { ++transfers; cpu_->upload(d, s, n); }
  void download(void* d, const void* s, size_t n) override { ++transfers; cpu_->download(d, s, n); }
  void copy(void* d, const void* s, size_t n) override { cpu_->copy(d, s, n); }
  void convert(Ptr d, Ptr s, size_t n) override { cpu_->convert(d, s, n); }
  void synchronize() override { cpu_->synchronize(); }
  void encoder_forward(Ptr o, const int* t, Ptr a, Ptr b, int B, int T, int C) override {
    cpu_->encoder_forward(o, t, a, b, B, T, C);
  }
  void encoder_backward(float* a, float* b, Ptr d, const int* t, int B, int T, int C) override {
    cpu_->encoder_backward(a, b, d, t, B, T, C);
  }
  void layernorm_forward(Ptr o, float* m, float* r, Ptr i, Ptr w, Ptr b, int N, int C) override {
    cpu_->layernorm_forward(o, m, r, i, w, b, N, C);
  }
  void layernorm_backward(Ptr di, float* dw, float* db, Ptr d, Ptr i, Ptr w, const float* m, const float* r, int N,
                          int C) override {
    cpu_->layernorm_backward(di, dw, db, d, i, w, m, r, N, C);
  }
  void matmul_forward(Ptr o, Ptr i, Ptr w, Ptr b, int N, int C, int OC) override {
    cpu_->matmul_forward(o, i, w, b, N, C, OC);
  }
  void matmul_backward(Ptr di, float* dw, float* db, Ptr d, Ptr i, Ptr w, int N, int C, int OC) override {
    cpu_->matmul_backward(di, dw, db, d, i, w, N, C, OC);
  }
  void gelu_forward(Ptr o, Ptr i, size_t n) override { cpu_->gelu_forward(o, i, n); }
  void gelu_backward(Ptr di, Ptr i, Ptr d, size_t n) override { cpu_->gelu_backward(di, i, d, n); }
  void residual_forward(Ptr o, Ptr a, Ptr b, size_t n) override { cpu_->residual_forward(o, a, b, n); }
  void attention_forward(Ptr o, float* l, Ptr q, int B, int T, int C, int NH) override {
    cpu_->attention_forward(o, l, q, B, T, C, NH);
  }
  void attention_backward(Ptr dq, Ptr d, Ptr q, Ptr o, const float* l, int B, int T, int C, int NH) override {
    cpu_->attention_backward(dq, d, q, o, l, B, T, C, NH);
  }
  void crossentropy(float* l, Ptr lg, const int* t, int N, int V, int Vp, float d, bool bw) override {
    cpu_->crossentropy(l, lg, t, N, V, Vp, d, bw);
  }
  double sum(const float* x, size_t n) override { return cpu_->sum(x, n); }
  double sum_squares(const float* g, size_t n) override { return cpu_->sum_squares(g, n); }
  void scale(float* x, float s, size_t n) override { cpu_->scale(x, s, n); }
  void adamw(float* m, Ptr c, float* a, float* b, const float* g, size_t n, const AdamWParams& hp) override {
    cpu_->adamw(m, c, a, b, g, n, hp);
  }
  size_t transfers = 0;

 private:
  std::unique_ptr<Ops> cpu_;
};
}  // namespace

// Several ranks sharing one GPU go through MPI with host staging; the trainer must train exactly as
// over plain MPI (same reductions, only copied through host memory on the way).
TEST(DataParallel, StagedCommunicatorTrainsLikePlainMpi) {
  for (int zero : {0, 1}) {
    TrainConfig c = base("");
    c.zero = zero;
    Result plain = train_on(MPI_COMM_WORLD, c);
    PretendDeviceOps ops;
    auto comm = make_communicator("mpi", &ops);
    EXPECT_EQ(comm->name(), "mpi+staging");
    Trainer t(plan_run(c), *comm, ops);
    std::vector<double> losses;
    for (const auto& s : t.run().steps) losses.push_back(s.loss);
    EXPECT_EQ(losses, plain.losses) << "zero " << zero;
    EXPECT_EQ(t.master_params(), plain.params) << "zero " << zero;
    EXPECT_GT(ops.transfers, size_t(4 * c.steps)) << "gradients must have been staged";
  }
}

// A non-finite gradient norm is an all-reduced value, so every rank skips the update together:
// training goes on (no deadlock) and the weights stay as they were.
// The NaN weight goes into the plan directly: --init-from refuses a model file with a NaN weight (a damaged
// file), but a run can still meet non-finite gradients (overflow, a corrupted step), and every rank must
// then skip the update alike.
TEST(DataParallel, NonFiniteGradientsAreSkippedOnEveryRank) {
  for (int zero : {0, 1}) {
    TrainConfig c = base("");
    c.zero = zero;
    c.steps = 3;
    RunPlan plan = plan_run(c);
    std::vector<float> init = gpt2_init(plan.model, make_layout(plan.model), 5);  // the same on every rank
    init[make_layout(plan.model).find("h.1.fcw").offset + 17] = NAN;
    plan.init_params = init;
    Result r = train_plan(MPI_COMM_WORLD, plan);
    ASSERT_EQ(r.losses.size(), 3u);
    for (double l : r.losses) EXPECT_TRUE(std::isnan(l));
    for (const auto& s : r.res.steps) EXPECT_FALSE(std::isfinite(s.grad_norm));
    ASSERT_EQ(r.params.size(), init.size());
    EXPECT_EQ(0, std::memcmp(r.params.data(), init.data(), init.size() * sizeof(float)))
        << "an update was applied despite a non-finite norm (zero " << zero << ")";
  }
}

// ZeRO-1 over ranks sharing a GPU (staged MPI): each rank updates its shard of the fp32 master, the
// master is all-gathered and the bf16 compute copy rebuilt from it with convert() (trainer.cpp). Checks:
//  - on every rank the compute copy is exactly bf16(master) (a stale or partial copy shows here);
//  - every rank holds the same master bits;
//  - ZeRO-1 trains like ZeRO-0: losses within rel 1e-3, master within rel L2 1e-3. Not bit-exact:
//    reduce_scatter and all_reduce may add the ranks' gradients in different orders (4 ranks), and
//    the global norm is summed from shards; the resulting 1-ulp differences can flip a bf16 rounding
//    and, through Adam's sign-like first steps, move a few near-zero-gradient weights by ~lr.
TEST(DataParallel, CudaSharedGpuZeroOneMatchesZeroZero) {
  int mine = cuda_device_count() > 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) GTEST_SKIP() << "no CUDA GPU";
  Result res[2];
  for (int zero : {0, 1}) {
    TrainConfig c = base("");
    c.device = "cuda";
    c.zero = zero;
    std::vector<float> copy;
    res[zero] = train_on(MPI_COMM_WORLD, c, &copy);
    const std::vector<float>& master = res[zero].params;
    ASSERT_EQ(copy.size(), master.size());
    size_t stale = 0;
    for (size_t i = 0; i < master.size(); ++i) stale += copy[i] != bf16_to_f32(f32_to_bf16(master[i]));
    EXPECT_EQ(stale, 0u) << "zero " << zero << ": compute copy != bf16(master) on rank " << world_rank();
    uint64_t h = 1469598103934665603ull;
    for (float x : master) {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      h = (h ^ u) * 1099511628211ull;
    }
    unsigned long long lo = 0, hi = 0, hv = h;
    MPI_Allreduce(&hv, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&hv, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    EXPECT_EQ(lo, hi) << "zero " << zero << ": ranks hold different master weights";
    for (double l : res[zero].losses) EXPECT_TRUE(std::isfinite(l)) << "zero " << zero;
  }
  EXPECT_LT(max_rel_diff(res[1].losses, res[0].losses), 1e-3);
  double num = 0, den = 0;
  for (size_t i = 0; i < res[0].params.size(); ++i) {
    const double d = double(res[1].params[i]) - res[0].params[i];
    num += d * d;
    den += double(res[0].params[i]) * res[0].params[i];
  }
  EXPECT_LT(std::sqrt(num / den), 1e-3) << "zero 1 vs zero 0 master weights, relative L2";
  if (world_rank() == 0)
    std::printf("[ equiv ] cuda, %d ranks on shared GPU(s): zero-1 vs zero-0 max rel loss diff %.3g, master rel L2 %.3g\n",
                world_size(), max_rel_diff(res[1].losses, res[0].losses), std::sqrt(num / den));
}
