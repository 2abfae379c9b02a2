// Single-rank communicator tests (no mpirun): the single backend's semantics, the segment helpers,
// and the factory's choices and --comm errors.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/errors.h"
#include "dist/backends.h"
#include "dist/comm.h"
#include "dist/watchdog.h"
#include "ops/ops.h"

using namespace mc;

namespace {

bool under_mpi() { return launched_by_mpi(); }

TEST(SingleComm, Identity) {
  auto c = make_single_communicator();
  EXPECT_EQ(c->name(), "single");
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->local_rank(), 0);
  EXPECT_EQ(c->local_size(), 1);
  EXPECT_FALSE(c->device_buffers());
  EXPECT_TRUE(make_single_communicator(true)->device_buffers());
}

TEST(SingleComm, CollectivesLeaveValues) {
  auto c = make_single_communicator();
  for (RedOp op : {RedOp::Sum, RedOp::Avg, RedOp::Max, RedOp::Min}) {
    std::vector<float> f = {1.5f, -2.f, 3.25f};
    c->all_reduce(f.data(), f.size(), DType::F32, op);
    EXPECT_EQ(f, (std::vector<float>{1.5f, -2.f, 3.25f}));
    std::vector<int32_t> i = {7, -3, 5};
    c->all_reduce(i.data(), i.size(), DType::I32, op);  // Avg over one rank divides by 1
    EXPECT_EQ(i, (std::vector<int32_t>{7, -3, 5}));
    std::vector<uint16_t> h = {f32_to_bf16(0.1f), f32_to_bf16(3.f)};
    c->all_reduce(h.data(), h.size(), DType::BF16, op);
    EXPECT_EQ(h[0], f32_to_bf16(0.1f));
  }
  std::vector<double> d = {1, 2, 3, 4, 5};
  auto h = c->all_reduce_async(d.data(), d.size(), DType::F64, RedOp::Sum);
  h->wait();
  h->wait();
  c->reduce_scatter(d.data(), {5}, DType::F64, RedOp::Avg);
  c->all_gather(d.data(), {5}, DType::F64);
  c->broadcast(d.data(), 5, DType::F64, 0);
  c->all_reduce(nullptr, 0, DType::F64, RedOp::Sum);
  c->barrier();
  EXPECT_EQ(d, (std::vector<double>{1, 2, 3, 4, 5}));
  EXPECT_EQ(c->all_reduce_host(2.5, RedOp::Sum), 2.5);
  EXPECT_EQ(c->all_reduce_host(2.5, RedOp::Avg), 2.5);
  EXPECT_EQ(make_single_communicator(true)->all_reduce_host(4.0, RedOp::Max), 4.0);
}

TEST(SingleComm, RejectsOtherRanks) {
  auto c = make_single_communicator();
  double x = 1;
  EXPECT_THROW(c->broadcast(&x, 1, DType::F64, 1), RuntimeError);
  EXPECT_THROW(c->reduce_scatter(&x, {1, 0}, DType::F64, RedOp::Sum), RuntimeError);
  EXPECT_THROW(c->all_gather(&x, {}, DType::F64), RuntimeError);
}

TEST(Segments, EvenSplitAndOffsets) {
  EXPECT_EQ(even_split(10, 4), (std::vector<size_t>{2, 3, 2, 3}));
  EXPECT_EQ(even_split(3, 4), (std::vector<size_t>{0, 1, 1, 1}));
  EXPECT_EQ(even_split(0, 3), (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ(even_split(7, 1), (std::vector<size_t>{7}));
  for (size_t n : {size_t(0), size_t(1), size_t(99), size_t(1000003)})
    for (int w : {1, 2, 3, 4, 7, 8}) {
      const auto c = even_split(n, w);
      ASSERT_EQ(c.size(), size_t(w));
      const auto off = segment_offsets(c);
      EXPECT_EQ(off.front(), 0u);
      EXPECT_EQ(off.back(), n);
      for (int r = 0; r < w; ++r) {
        EXPECT_EQ(off[r], n * size_t(r) / size_t(w));
        EXPECT_LE(c[r], n / size_t(w) + 1);
      }
    }
  EXPECT_EQ(segment_offsets({3, 0, 5}), (std::vector<size_t>{0, 3, 3, 8}));
  EXPECT_EQ(segment_offsets({}), (std::vector<size_t>{0}));
}

TEST(Factory, SingleRankChoices) {
  if (under_mpi()) GTEST_SKIP() << "run without mpirun";
  auto a = make_communicator("auto", nullptr);
  EXPECT_EQ(a->name(), "single");
  EXPECT_EQ(a->size(), 1);
  auto s = make_communicator("single", nullptr);
  EXPECT_EQ(s->name(), "single");
  auto ops = make_ops("cpu", 0);
  auto with_ops = make_communicator("auto", ops.get());
  EXPECT_EQ(with_ops->name(), "single");
  EXPECT_FALSE(with_ops->device_buffers());
}

TEST(Factory, Errors) {
  try {
    make_communicator("tcp", nullptr);
    FAIL() << "no error for an unknown backend";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--comm: unknown backend 'tcp' (expected auto|single|mpi|nccl)");
  }
  EXPECT_THROW(make_communicator("", nullptr), UsageError);
  // nccl needs NCCL, a GPU and GPU ops; this machine (or this build) lacks at least one.
  auto cpu = make_ops("cpu", 0);
  if (cuda_device_count() == 0) {
    try {
      make_communicator("nccl", cpu.get());
      FAIL() << "no error for --comm nccl without a GPU";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--comm nccl"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_communicator("nccl", nullptr), UsageError);
  }
#ifndef MC_HAVE_MPI
  try {
    make_communicator("mpi", nullptr);
    FAIL() << "no error for --comm mpi without MPI";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("built without MPI"), std::string::npos) << e.what();
  }
#endif
}

TEST(Factory, LaunchedByMpiReadsTheEnvironment) {
  if (under_mpi()) GTEST_SKIP() << "run without mpirun";
  EXPECT_FALSE(launched_by_mpi());
  setenv("PMIX_RANK", "0", 1);
  EXPECT_TRUE(launched_by_mpi());
  unsetenv("PMIX_RANK");
  setenv("SLURM_PROCID", "0", 1);
  EXPECT_FALSE(launched_by_mpi());  // a batch script alone is not a launch
  setenv("SLURM_NTASKS", "2", 1);
  EXPECT_TRUE(launched_by_mpi());
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
  EXPECT_FALSE(launched_by_mpi());
}

}  // namespace

// Note [Watchdog]: a phase may be allowed more than the usual limit (a checkpoint of a large model on slow
// storage, which its peers wait for). Each case runs in a child process, since the watchdog ends the
// process it watches.
TEST(WatchdogDeathTest, PhaseAllowanceRaisesTheLimit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Limit 0.3 s, phase allowed 3 s, 1 s without progress: the run goes on.
  EXPECT_EXIT(
      {
        watchdog_start(0.3, "start-up");
        watchdog_phase("checkpoint after step 1", 3.0);
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        watchdog_stop();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  // The same without the allowance: ended, naming the phase.
  EXPECT_EXIT(
      {
        watchdog_start(0.3, "start-up");
        watchdog_phase("checkpoint after step 1");
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        watchdog_stop();
        std::exit(0);
      },
      ::testing::ExitedWithCode(1), "watchdog: no progress .* during checkpoint after step 1");
  // The allowance is the phase's only: the next phase has the usual limit again.
  EXPECT_EXIT(
      {
        watchdog_start(0.3, "start-up");
        watchdog_phase("checkpoint after step 1", 3.0);
        watchdog_phase("step 2");
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        watchdog_stop();
        std::exit(0);
      },
      ::testing::ExitedWithCode(1), "during step 2");
}
