// Alpha-beta cost models of the collectives the trainer issues (all-reduce; reduce-scatter and
// all-gather for ZeRO), for n devices placed devices_per_node to a node, and their calibration from
// `minicolossus bench-allreduce` tables.
// Invariant: every function is pure and monotone non-decreasing in bytes; n == 1 costs 0. Inside one
// node, a profile's measured curve (Hardware::intra_measured) replaces the link model.
#pragma once
#include <string>
#include <vector>

#include "sim/hardware.h"

namespace mc::sim {

// Closed forms on a single uniform link (the unit tests check these exactly):
//   ring all-reduce      2(n-1)/n * S/B + 2(n-1) * alpha
//   ring reduce-scatter  (n-1)/n * S/B + (n-1) * alpha       (all-gather: the same)
//   tree all-reduce      2 * S/B + 2 * ceil(log2 n) * alpha  (pipelined double binary tree, as NCCL)
double ring_all_reduce_s(double bytes, int n, const Link& l);
double ring_reduce_scatter_s(double bytes, int n, const Link& l);
double tree_all_reduce_s(double bytes, int n, const Link& l);

enum class Algo { Auto, Ring, Tree, Hier };
// "auto" | "ring" | "tree" | "hier"; UsageError naming --algo otherwise.
Algo parse_algo(const std::string& s);
const char* algo_name(Algo a);

struct CollectiveCost {
  double seconds = 0;
  Algo algo = Algo::Ring;  // the algorithm priced (Auto resolved to the cheapest)
};

// Switch traversals on the worst path between two of `endpoints` endpoints of a fat tree of switches
// with `radix` ports: k tiers hold radix * (radix/2)^(k-1) endpoints, and the path crosses 2k - 1 switches
// (radix 128: 1 up to 128 endpoints, 3 up to 8192, 5 up to 524,288).
int fat_tree_hops(long long endpoints, int radix);

// One collective of `bytes` (the full buffer, as the trainer passes it) over n devices of hw:
//   Ring: rings through all n devices, one per NIC of a node; the NICs (or NVLink) set the bandwidth; of
//         its 2(n-1) steps, 2(nodes-1) cross nodes and pay the network's latency (Note [Collective costs]).
//   Tree: double binary tree over the nodes, chained inside each node.
//   Hier: reduce-scatter inside each node (NVLink, or NVLS when hw.nvls_bw > 0), all-reduce of 1/g of
//         the data across nodes on each rail (ring or tree, whichever is cheaper), all-gather inside.
//   Auto: the cheapest of those that apply (NCCL's tuner does the same with its own table).
// Inter-node latency is hw.inter.alpha + hops * hw.hop_latency, hops from fat_tree_hops over the nodes
// (topology "rail": the devices of one rail; "fat-tree": all devices). hw.collective_launch_s is added once.
CollectiveCost all_reduce(const Hardware& hw, double bytes, int n, Algo algo);
// ZeRO's halves of an all-reduce: ring or hierarchical ring only (trees do not reduce-scatter).
CollectiveCost reduce_scatter(const Hardware& hw, double bytes, int n, Algo algo);
CollectiveCost all_gather(const Hardware& hw, double bytes, int n, Algo algo);

// One row of a bench-allreduce table.
struct BenchRow {
  double bytes = 0;
  double seconds = 0;  // average time of one all-reduce
};
struct BenchTable {
  int ranks = 0;
  std::string backend;  // "mpi", "nccl", ...
  std::vector<BenchRow> rows;
};
// Parses the text `minicolossus bench-allreduce` prints (its "# minicolossus bench-allreduce: backend
// B, N ranks, ..." header and the size/time columns). UsageError naming the file when it is not such a
// table, has fewer than 2 rows, or non-positive values.
BenchTable read_bench_table(const std::string& path);
// Least-squares fit of the ring formula to the table: the Link whose ring_all_reduce_s matches it best
// (alpha >= 0, bw > 0), weighting rows by relative error so small and large messages both count.
Link fit_ring_link(const BenchTable& t);
// The table as a MeasuredCurve (hardware.h): its points, made non-decreasing (a later, faster size is
// timing noise), with the alpha of fit_ring_link. UsageError as fit_ring_link.
MeasuredCurve curve_from_table(const BenchTable& t);

}  // namespace mc::sim
