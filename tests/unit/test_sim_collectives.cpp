// Tests of the collective cost models of `minicolossus simulate` (src/sim/collectives.cpp): the single-link closed
// forms exactly, the profile-level algorithms against published H100 bus bandwidths and each other, the fat-tree
// hop count, and the calibration from bench-allreduce tables (parsing real output, rejecting anything else).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "../gtest_util.h"
#include "sim/collectives.h"

namespace mc::sim {
namespace {

using mc::test::expect_usage;
using mc::test::test_scratch;

double busbw(double bytes, int n, double seconds) { return bytes / seconds * 2.0 * (n - 1) / n; }

TEST(SimCollectives, RingAllReduceClosedForm) {
  const Link l{100e9, 2e-6};
  for (int n : {2, 3, 8, 1000}) {
    for (double S : {1.0, 4096.0, 1e6, 1e9}) {
      const double want = 2.0 * (n - 1) / n * S / l.bw + 2.0 * (n - 1) * l.alpha;
      EXPECT_DOUBLE_EQ(ring_all_reduce_s(S, n, l), want) << "n " << n << " S " << S;
      EXPECT_DOUBLE_EQ(ring_reduce_scatter_s(S, n, l), want / 2) << "n " << n << " S " << S;
    }
  }
  // concrete numbers: n 4, 1 GB over 100 GB/s: 1.5 * 10 ms + 6 * 2 us
  EXPECT_NEAR(ring_all_reduce_s(1e9, 4, l), 15e-3 + 12e-6, 1e-12);
  EXPECT_EQ(ring_all_reduce_s(1e9, 1, l), 0);
  EXPECT_EQ(ring_reduce_scatter_s(1e9, 1, l), 0);
  EXPECT_EQ(tree_all_reduce_s(1e9, 1, l), 0);
}

TEST(SimCollectives, TreeAllReduceClosedForm) {
  const Link l{50e9, 5e-6};
  // ceil(log2 n): 2 -> 1, 3 -> 2, 4 -> 2, 5 -> 3, 1024 -> 10, 1025 -> 11
  const std::pair<int, int> cases[] = {{2, 1}, {3, 2}, {4, 2}, {5, 3}, {1024, 10}, {1025, 11}};
  for (const auto& [n, lg] : cases)
    EXPECT_DOUBLE_EQ(tree_all_reduce_s(1e8, n, l), 2.0 * 1e8 / l.bw + 2.0 * lg * l.alpha) << n;
}

TEST(SimCollectives, ClosedFormsMonotoneInBytes) {
  const Link l{10e9, 1e-6};
  double prev_r = 0, prev_s = 0, prev_t = 0;
  for (double S = 1; S < 1e11; S *= 3) {
    const double r = ring_all_reduce_s(S, 7, l), s = ring_reduce_scatter_s(S, 7, l), t = tree_all_reduce_s(S, 7, l);
    EXPECT_GT(r, prev_r);
    EXPECT_GT(s, prev_s);
    EXPECT_GT(t, prev_t);
    prev_r = r, prev_s = s, prev_t = t;
  }
}

TEST(SimCollectives, ParseAlgo) {
  EXPECT_EQ(parse_algo("auto"), Algo::Auto);
  EXPECT_EQ(parse_algo("ring"), Algo::Ring);
  EXPECT_EQ(parse_algo("tree"), Algo::Tree);
  EXPECT_EQ(parse_algo("hier"), Algo::Hier);
  for (Algo a : {Algo::Auto, Algo::Ring, Algo::Tree, Algo::Hier}) EXPECT_EQ(parse_algo(algo_name(a)), a);
  expect_usage([] { parse_algo("nvls"); }, {"--algo", "nvls"});
}

TEST(SimCollectives, FatTreeHops) {
  // radix 128: one switch holds 128, two tiers 128 * 64 = 8192, three 128 * 64^2 = 524,288
  EXPECT_EQ(fat_tree_hops(2, 128), 1);
  EXPECT_EQ(fat_tree_hops(128, 128), 1);
  EXPECT_EQ(fat_tree_hops(129, 128), 3);
  EXPECT_EQ(fat_tree_hops(8192, 128), 3);
  EXPECT_EQ(fat_tree_hops(8193, 128), 5);
  EXPECT_EQ(fat_tree_hops(100000, 128), 5);
  EXPECT_EQ(fat_tree_hops(524288, 128), 5);
  EXPECT_EQ(fat_tree_hops(524289, 128), 7);
  // radix 64 (a 64-port NDR InfiniBand switch): 64, 2048, 65536
  EXPECT_EQ(fat_tree_hops(64, 64), 1);
  EXPECT_EQ(fat_tree_hops(2048, 64), 3);
  EXPECT_EQ(fat_tree_hops(2049, 64), 5);
  EXPECT_EQ(fat_tree_hops(65537, 64), 7);
  // huge counts terminate
  EXPECT_EQ(fat_tree_hops(1LL << 40, 4), 2 * 39 - 1);  // 4 * 2^(k-1) >= 2^40: k = 39
}

TEST(SimCollectives, OneDeviceOrNoBytesCostNothing) {
  const Hardware h = builtin_hardware("h100");
  for (Algo a : {Algo::Auto, Algo::Ring, Algo::Tree, Algo::Hier}) {
    EXPECT_EQ(all_reduce(h, 1e9, 1, a).seconds, 0);
    EXPECT_EQ(reduce_scatter(h, 1e9, 1, a).seconds, 0);
    EXPECT_EQ(all_gather(h, 1e9, 1, a).seconds, 0);
    EXPECT_EQ(all_reduce(h, 0, 64, a).seconds, 0);
  }
}

TEST(SimCollectives, InsideOneNodeRingIsTheClosedFormPlusLaunch) {
  const Hardware h = builtin_hardware("h100");
  for (int n : {2, 4, 8})
    for (double S : {8.0, 1e6, 1e9}) {
      const auto c = all_reduce(h, S, n, Algo::Ring);
      EXPECT_EQ(c.algo, Algo::Ring);
      EXPECT_DOUBLE_EQ(c.seconds, ring_all_reduce_s(S, n, h.intra) + h.collective_launch_s) << n << " " << S;
      EXPECT_DOUBLE_EQ(reduce_scatter(h, S, n, Algo::Ring).seconds,
                       ring_reduce_scatter_s(S, n, h.intra) + h.collective_launch_s);
    }
}

TEST(SimCollectives, H100BusBandwidthMatchesPublishedFigures) {
  const Hardware h = builtin_hardware("h100");
  const double S = 4.0 * (1 << 30);  // 4 GiB: latency negligible
  // nccl-tests on 8 H100 SXM: ~370 GB/s ring, ~480 GB/s NVLS
  const auto ring = all_reduce(h, S, 8, Algo::Ring);
  EXPECT_NEAR(busbw(S, 8, ring.seconds) / 1e9, 370, 370 * 0.05);
  const auto best = all_reduce(h, S, 8, Algo::Auto);
  EXPECT_EQ(best.algo, Algo::Hier);  // NVLS inside one node
  EXPECT_NEAR(busbw(S, 8, best.seconds) / 1e9, 480, 480 * 0.05);
  // across nodes the NICs bind: 8 x 45 GB/s = 360 GB/s
  EXPECT_NEAR(busbw(S, 64, all_reduce(h, S, 64, Algo::Ring).seconds) / 1e9, 360, 360 * 0.05);
  // without NVLS, Hier inside one node is the ring again
  Hardware no_nvls = h;
  no_nvls.nvls_bw = 0;
  EXPECT_DOUBLE_EQ(all_reduce(no_nvls, S, 8, Algo::Hier).seconds, ring.seconds);
}

TEST(SimCollectives, AutoIsTheCheapestAndMonotone) {
  for (const char* name : {"h100", "h200", "cpu"}) {
    Hardware h = builtin_hardware(name);
    for (const char* topo : {"rail", "fat-tree"}) {
      h.topology = topo;
      for (int n : {2, 3, 8, 9, 16, 64, 1000, 8192, 100000, 200000}) {
        double prev = 0, prev_rs = 0;
        for (double S = 4; S < 1e11; S *= 4) {
          const auto a = all_reduce(h, S, n, Algo::Auto);
          for (Algo x : {Algo::Ring, Algo::Tree, Algo::Hier}) {
            EXPECT_LE(a.seconds, all_reduce(h, S, n, x).seconds) << name << " " << topo << " n " << n << " S " << S;
            if (x != Algo::Tree)
              EXPECT_LE(reduce_scatter(h, S, n, Algo::Auto).seconds, reduce_scatter(h, S, n, x).seconds);
          }
          EXPECT_DOUBLE_EQ(all_reduce(h, S, n, a.algo).seconds, a.seconds);  // the algorithm it reports
          EXPECT_GE(a.seconds, prev) << name << " n " << n << " S " << S;
          const double rs = reduce_scatter(h, S, n, Algo::Auto).seconds;
          EXPECT_GE(rs, prev_rs);
          EXPECT_DOUBLE_EQ(all_gather(h, S, n, Algo::Auto).seconds, rs);
          prev = a.seconds, prev_rs = rs;
        }
      }
    }
  }
}

TEST(SimCollectives, FlatRingsDieOfLatencyAtScale) {
  const Hardware h = builtin_hardware("h100");
  const int n = 100000;
  for (double S : {1e3, 1e6}) {
    const auto a = all_reduce(h, S, n, Algo::Auto);
    EXPECT_TRUE(a.algo == Algo::Hier || a.algo == Algo::Tree) << algo_name(a.algo);
    EXPECT_GT(all_reduce(h, S, n, Algo::Ring).seconds, 100 * a.seconds) << S;
  }
  // the ring's latency, by hand: 12500 nodes on rails of radix-128 switches: 3 tiers, 5 hops
  const double lat = h.inter.alpha + 5 * h.hop_latency;
  const double want = 2.0 * (n - 1) / n * 1e3 / std::min(8.0 / 7 * h.intra.bw, 8 * h.inter.bw) +
                      2.0 * (n - 12500) * h.intra.alpha + 2.0 * (12500 - 1) * lat + h.collective_launch_s;
  EXPECT_NEAR(all_reduce(h, 1e3, n, Algo::Ring).seconds, want, want * 1e-12);
  // and the tree's: 2 * 7 intra steps, 2 * ceil(log2 12500) = 28 inter steps
  const double tree =
      2e3 / std::min(h.intra.bw, 8 * h.inter.bw) + 14 * h.intra.alpha + 28 * lat + h.collective_launch_s;
  EXPECT_NEAR(all_reduce(h, 1e3, n, Algo::Tree).seconds, tree, tree * 1e-12);
}

TEST(SimCollectives, FatTreeCountsAllDevices) {
  Hardware h = builtin_hardware("h100");
  const double rail = all_reduce(h, 1e3, 1024, Algo::Tree).seconds;  // 128 nodes: 1 hop on a rail
  h.topology = "fat-tree";
  const double fat = all_reduce(h, 1e3, 1024, Algo::Tree).seconds;  // 1024 NICs: 3 hops
  EXPECT_NEAR(fat - rail, 2.0 * 7 * 2 * h.hop_latency, 1e-12);       // 2 log2(128) steps, 2 more hops each
}

TEST(SimCollectives, CpuProfileIsOneNode) {
  Hardware h = builtin_hardware("cpu");
  h.intra_measured = MeasuredCurve();  // the fitted link alone
  for (int n : {2, 3, 16})
    EXPECT_DOUBLE_EQ(all_reduce(h, 1e6, n, Algo::Ring).seconds, ring_all_reduce_s(1e6, n, h.intra));
}

// Note [Measured curve]: the measured points themselves on the measured rank count, interpolation between them,
// proportional beyond them, and the ring's latency and traffic ratios for other rank counts.
TEST(SimCollectives, MeasuredCurve) {
  BenchTable t;
  t.ranks = 2;
  t.rows = {{1e3, 10e-6}, {1e6, 100e-6}, {1e7, 5000e-6}, {2e7, 4000e-6}};  // the last is noise: made 5000 us
  const MeasuredCurve m = curve_from_table(t);
  ASSERT_EQ(m.seconds.size(), 4u);
  EXPECT_EQ(m.seconds[3], 5000e-6);
  Hardware h = builtin_hardware("cpu");
  h.intra_measured = m;
  EXPECT_DOUBLE_EQ(all_reduce(h, 1e6, 2, Algo::Auto).seconds, 100e-6);
  EXPECT_DOUBLE_EQ(all_reduce(h, 1e7, 2, Algo::Ring).seconds, 5000e-6);
  EXPECT_NEAR(all_reduce(h, std::sqrt(1e3 * 1e6), 2, Algo::Ring).seconds, std::sqrt(10e-6 * 100e-6), 1e-15);
  EXPECT_DOUBLE_EQ(all_reduce(h, 100, 2, Algo::Ring).seconds, 10e-6);
  EXPECT_NEAR(all_reduce(h, 4e7, 2, Algo::Ring).seconds, 2 * 5000e-6, 1e-15);
  EXPECT_NEAR(reduce_scatter(h, 1e6, 2, Algo::Auto).seconds, 50e-6, 1e-15);
  // 4 ranks: latency 2 alpha -> 6 alpha, bandwidth part x (3/4)/(1/2).
  const double lat = 2 * m.alpha, bw = 100e-6 - lat;
  EXPECT_NEAR(all_reduce(h, 1e6, 4, Algo::Ring).seconds, 3 * lat + 1.5 * bw, 1e-15);
  // Not used across nodes: a GPU profile with a curve still prices its multi-node collectives from the links.
  Hardware g = builtin_hardware("h100");
  const double before = all_reduce(g, 1e6, 64, Algo::Auto).seconds;
  g.intra_measured = m;
  EXPECT_EQ(all_reduce(g, 1e6, 64, Algo::Auto).seconds, before);
  EXPECT_DOUBLE_EQ(all_reduce(g, 1e6, 2, Algo::Auto).seconds, 100e-6);
}

// A table as bench-allreduce prints it (src/dist/bench_allreduce.cpp), from a 2-rank run on the 2-core machine.
const char* kRealTable =
    "# minicolossus bench-allreduce: backend mpi, 2 ranks, dtype float, op sum, device cpu, iters 20, warmup 5\n"
    "     size(B)        count     type     time(us)  algbw(GB/s)  busbw(GB/s)   #wrong\n"
    "           8            2    float         7.54        0.001        0.001        0\n"
    "        1024          256    float         7.69        0.133        0.133        0\n"
    "      131072        32768    float        33.76        3.883        3.883        0\n"
    "     4194304      1048576    float       411.58       10.191       10.191        0\n"
    "# avg busbw: 3.552 GB/s over 4 sizes\n";

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}

TEST(SimCollectives, ReadBenchTableParsesRealOutput) {
  const std::string d = test_scratch("sim_coll");
  const BenchTable t = read_bench_table(write_file(d, "t.txt", kRealTable));
  EXPECT_EQ(t.ranks, 2);
  EXPECT_EQ(t.backend, "mpi");
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[0].bytes, 8);
  EXPECT_DOUBLE_EQ(t.rows[0].seconds, 7.54e-6);
  EXPECT_EQ(t.rows[3].bytes, 4194304);
  EXPECT_DOUBLE_EQ(t.rows[3].seconds, 411.58e-6);
  const Link l = fit_ring_link(t);
  EXPECT_GT(l.bw, 1e9);
  EXPECT_GE(l.alpha, 0);
}

TEST(SimCollectives, ReadBenchTableRejectsOtherFiles) {
  const std::string d = test_scratch("sim_coll");
  const std::string header = std::string(kRealTable).substr(0, std::string(kRealTable).find('\n') + 1);
  const std::string row = "        1024          256    float         7.69        0.133        0.133        0\n";
  const std::string row2 = "        2048          512    float         8.69        0.133        0.133        0\n";
  struct Case {
    const char* name;
    std::string text;
    const char* says;
  };
  const Case cases[] = {
      {"empty.txt", "", "no '# minicolossus bench-allreduce"},
      {"garbage.txt", "hello world\n", "header"},
      {"noheader.txt", row + row2, "header"},
      {"onerow.txt", header + row, "1 row"},
      {"comments.txt", header + "# just a comment\n", "0 rows"},
      {"badnum.txt", header + row + "        2048          512    float         x.69        0.1        0.1        0\n",
       "not a bench-allreduce row"},
      {"zerotime.txt",
       header + row + "        2048          512    float         0.00        0.1        0.1        0\n", "positive"},
      {"wrong.txt", header + row + "        2048          512    float         8.00        0.1        0.1        3\n",
       "wrong"},
      {"twotables.txt", header + row + row2 + header + row + row2, "second"},
  };
  for (const auto& c : cases) {
    const std::string p = write_file(d, c.name, c.text);
    SCOPED_TRACE(c.name);
    expect_usage([&] { read_bench_table(p); }, {p, c.says});
  }
  expect_usage([&] { read_bench_table(d); }, {d, "directory"});
  expect_usage([&] { read_bench_table(d + "/missing.txt"); }, {d + "/missing.txt"});
}

TEST(SimCollectives, FitRecoversTheLink) {
  for (int n : {2, 4, 16}) {
    const Link truth{12.5e9, 3.2e-6};
    BenchTable t;
    t.ranks = n;
    t.backend = "mpi";
    for (double S = 8; S <= 64.0 * (1 << 20); S *= 2) t.rows.push_back({S, ring_all_reduce_s(S, n, truth)});
    const Link l = fit_ring_link(t);
    EXPECT_NEAR(l.bw, truth.bw, truth.bw * 0.01) << n;
    EXPECT_NEAR(l.alpha, truth.alpha, truth.alpha * 0.01) << n;
  }
  // a table whose small sizes are faster than any positive latency allows: alpha clamps to 0
  BenchTable t;
  t.ranks = 2;
  t.rows = {{1e3, 1e-7}, {1e6, 1e-3}, {2e6, 2.2e-3}};
  const Link l = fit_ring_link(t);
  EXPECT_EQ(l.alpha, 0);
  EXPECT_GT(l.bw, 0);
}

TEST(SimCollectives, FitRejectsUselessTables) {
  BenchTable one;
  one.ranks = 1;
  one.rows = {{8, 1e-6}, {16, 2e-6}};
  expect_usage([&] { fit_ring_link(one); }, {"1 rank"});
  BenchTable flat;
  flat.ranks = 2;
  flat.rows = {{8, 2e-6}, {1e6, 1e-6}};
  expect_usage([&] { fit_ring_link(flat); }, {"does not grow"});
  BenchTable same;
  same.ranks = 2;
  same.rows = {{8, 2e-6}, {8, 3e-6}};
  expect_usage([&] { fit_ring_link(same); }, {"same size"});
}

}  // namespace
}  // namespace mc::sim
