// Alpha-beta costs of all-reduce, reduce-scatter and all-gather over n devices of a Hardware profile (flat ring,
// tree, hierarchical), and the calibration of a link from `minicolossus bench-allreduce` tables.
// Invariant: pure functions; every cost is monotone non-decreasing in bytes, 0 for n == 1 or 0 bytes, and the
// single-link closed forms are exactly the ones collectives.h states (the unit tests compare them bit for bit).
#include "sim/collectives.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "core/errors.h"
#include "core/files.h"

namespace mc::sim {

// Note [Collective costs]
// Every algorithm is priced as bandwidth term + latency term: bytes over the bandwidth of its bottleneck, plus one
// latency per step on its critical path; hw.collective_launch_s is added once per call. S is the full buffer.
//
// Placement. n devices fill nodes of g = min(n, devices_per_node) devices; N = ceil(n / devices_per_node) nodes
// (a last, partial node is priced like a full one). A CPU profile (cores_per_node > 0) is one node whatever n is:
// ranks beyond its cores share them, which the step model prices; here they all talk through shared memory.
//
// Inter-node step latency: lat = inter.alpha + hops * hop_latency, hops = fat_tree_hops(endpoints, radix) for the
// worst pair: on a "rail" fabric the endpoints of a switch tree are the N nodes (GPU i of every node sits on rail i,
// and NCCL keeps traffic on its rail), on a "fat-tree" they are all n NICs.
//
// Flat ring. NCCL builds one ring per channel, each passing through the g GPUs of a node over NVLink and leaving the
// node once, through a different NIC per ring (so g rings use the g NICs). Each ring link carries 2(n-1)/n of that
// ring's share of S. A GPU sends over NVLink in g-1 of the g rings and over its NIC in one, so the per-direction
// loads are (g-1)/g * X on NVLink and X/g on the NIC for X = 2(n-1)/n * S, and the ring's bus bandwidth is
//   B = min(g/(g-1) * intra.bw, g * inter.bw)   (inter.bw alone when g == 1).
// On 8 H100s per node that is min(423, 360) GB/s: the NICs bound it, as measured multi-node ring all-reduces show.
// Latency: a ring step does not wait for a global barrier but for the chunk of its predecessor, so the critical
// path runs through 2(n-1) consecutive links of the ring, of which about 2(N-1) cross nodes; NCCL's own tuner
// (src/graph/tuning.cc) prices a ring all-reduce the same way: 2(n-N) intra steps + 2(N-1) inter steps. At 100,000
// GPUs that is still ~200,000 steps, ~0.2 s of pure latency per call: flat rings die of latency at scale.
//   ring all-reduce = 2(n-1)/n * S/B + 2(n-N) * intra.alpha + 2(N-1) * lat
//   ring reduce-scatter / all-gather: half of each term.
// Inside one node (N == 1) this is exactly ring_all_reduce_s on hw.intra.
//
// Tree (NCCL's double binary tree over nodes, a chain through the g GPUs inside each node). In a double binary tree
// each node is interior in one tree and a leaf in the other; per direction a node moves 2S in total (S up and S
// down), spread over its g NICs, while every GPU of the chain forwards S up and S down over NVLink. Pipelined:
//   tree all-reduce = 2S / min(intra.bw, g * inter.bw) + 2(g-1) * intra.alpha + 2 ceil(log2 N) * lat
// (for g == 1 exactly tree_all_reduce_s over the nodes; for N == 1 the chain alone, never cheaper than the ring).
//
// Hier (NCCL's NVLS-tree / CollNet-chain shape). Reduce-scatter inside the node, so each GPU holds the sum of 1/g of
// the buffer over its node; all-reduce of that S/g across the N nodes on each rail (the g rails in parallel, each on
// its own NIC), by ring or tree, whichever is cheaper; all-gather inside the node. The intra-node half uses NVLS when
// nvls_bw > 0 (one multimem reduce and one multimem store: latency 2 intra.alpha, bus bandwidth nvls_bw), else a
// ring on intra (both halves: 2(g-1)/g * S / intra.bw, 2(g-1) intra.alpha). NCCL pipelines the stages chunk by
// chunk, so the bandwidth terms overlap (their maximum counts) and the latencies add:
//   hier all-reduce = max(intra bandwidth term, rail bandwidth term) + intra latency + rail latency.
// Within one node Hier is NVLS (or the ring again without NVLS); the rail all-reduce moves only 2(N-1)/N * S/g per
// NIC instead of the flat ring's 2(n-1)/n * S/g, which is why it wins for a few nodes, and its tree keeps the
// latency logarithmic, which is why it wins at scale.
//
// Reduce-scatter and all-gather (ZeRO): ring (the formula above, halved) or Hier (intra reduce-scatter then rail
// ring reduce-scatter of S/g, pipelined); trees do not reduce-scatter, so Algo::Tree is priced as Auto over those.
// Auto is the cheapest applicable algorithm, ties going to Ring, then Hier, then Tree.

double ring_all_reduce_s(double bytes, int n, const Link& l) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / l.bw + 2.0 * (n - 1) * l.alpha;
}

double ring_reduce_scatter_s(double bytes, int n, const Link& l) {
  if (n <= 1) return 0;
  return double(n - 1) / n * bytes / l.bw + double(n - 1) * l.alpha;
}

static int ceil_log2(long long n) {
  int k = 0;
  while ((1LL << k) < n) ++k;
  return k;
}

double tree_all_reduce_s(double bytes, int n, const Link& l) {
  if (n <= 1) return 0;
  return 2.0 * bytes / l.bw + 2.0 * ceil_log2(n) * l.alpha;
}

Algo parse_algo(const std::string& s) {
  if (s == "auto") return Algo::Auto;
  if (s == "ring") return Algo::Ring;
  if (s == "tree") return Algo::Tree;
  if (s == "hier") return Algo::Hier;
  throw UsageError("--algo " + s + ": unknown algorithm (expected auto|ring|tree|hier)");
}

const char* algo_name(Algo a) {
  switch (a) {
    case Algo::Auto: return "auto";
    case Algo::Ring: return "ring";
    case Algo::Tree: return "tree";
    case Algo::Hier: return "hier";
  }
  return "?";
}

// A fat tree of k tiers built from switches of radix r: the top tier uses all r ports downwards, every lower tier
// r/2 down and r/2 up, so k tiers hold r * (r/2)^(k-1) endpoints (r for one switch, r^2/2 for leaf-spine, r^3/4
// for three tiers; 128, 8192 and 524,288 for r = 128). The worst path climbs to the top and down: 2k - 1 switches.
int fat_tree_hops(long long endpoints, int radix) {
  MC_CHECK(radix >= 2, "switch radix %d", radix);
  if (endpoints <= radix) return 1;
  MC_CHECK(radix >= 4, "a radix-%d switch cannot build a tree for %lld endpoints", radix, endpoints);
  const double half = double(radix / 2);
  double capacity = radix;
  int tiers = 1;
  while (capacity < double(endpoints)) {
    capacity *= half;
    ++tiers;
  }
  return 2 * tiers - 1;
}

namespace {

struct Placement {
  int g = 1;        // devices per node
  long long N = 1;  // nodes
};

Placement place(const Hardware& hw, int n) {
  Placement p;
  if (hw.cores_per_node > 0 || n <= hw.devices_per_node) {
    p.g = n;
    p.N = 1;
  } else {
    p.g = hw.devices_per_node;
    p.N = (n + hw.devices_per_node - 1) / hw.devices_per_node;
  }
  return p;
}

double inter_latency(const Hardware& hw, const Placement& p, int n) {
  const long long endpoints = hw.topology == "fat-tree" ? n : p.N;
  return hw.inter.alpha + fat_tree_hops(endpoints, hw.switch_radix) * hw.hop_latency;
}

// Bus bandwidth of a flat ring through all nodes: Note [Collective costs].
double flat_ring_bw(const Hardware& hw, int g) {
  if (g <= 1) return hw.inter.bw;
  return std::min(double(g) / (g - 1) * hw.intra.bw, g * hw.inter.bw);
}

// phase = 2 for an all-reduce, 1 for a reduce-scatter or an all-gather (half the steps and half the traffic).
double ring_cost(const Hardware& hw, double S, int n, int phase) {
  const Placement p = place(hw, n);
  if (p.N == 1) return phase == 2 ? ring_all_reduce_s(S, n, hw.intra) : ring_reduce_scatter_s(S, n, hw.intra);
  const double lat = inter_latency(hw, p, n);
  return phase * ((n - 1.0) / n * S / flat_ring_bw(hw, p.g) + double(n - p.N) * hw.intra.alpha +
                  double(p.N - 1) * lat);
}

double tree_cost(const Hardware& hw, double S, int n) {
  const Placement p = place(hw, n);
  if (p.N == 1) return 2.0 * S / hw.intra.bw + 2.0 * (n - 1) * hw.intra.alpha;  // one chain
  const double lat = inter_latency(hw, p, n);
  const double bw = p.g == 1 ? hw.inter.bw : std::min(hw.intra.bw, p.g * hw.inter.bw);
  return 2.0 * S / bw + 2.0 * (p.g - 1) * hw.intra.alpha + 2.0 * ceil_log2(p.N) * lat;
}

double hier_cost(const Hardware& hw, double S, int n, int phase) {
  const Placement p = place(hw, n);
  const int g = p.g;
  // intra-node reduce-scatter (and all-gather for an all-reduce)
  double intra_bw_s = 0, intra_lat = 0;
  if (g > 1) {
    const bool nvls = hw.nvls_bw > 0;
    intra_bw_s = phase * (g - 1.0) / g * S / (nvls ? hw.nvls_bw : hw.intra.bw);
    intra_lat = phase * (nvls ? 1.0 : g - 1.0) * hw.intra.alpha;
  }
  if (p.N == 1) return intra_bw_s + intra_lat;
  // the rails: S/g over N nodes, every rail on its own NIC
  const Link rail{hw.inter.bw, inter_latency(hw, p, n)};
  const double part = S / g, N = double(p.N);
  double best = std::numeric_limits<double>::infinity();
  // ring over the nodes of the rail
  const double ring_bw_s = phase * (N - 1) / N * part / rail.bw, ring_lat = phase * (N - 1) * rail.alpha;
  best = std::max(intra_bw_s, ring_bw_s) + intra_lat + ring_lat;
  if (phase == 2) {  // or a double binary tree over them (all-reduce only)
    const double tree_bw_s = 2.0 * part / rail.bw, tree_lat = 2.0 * ceil_log2(p.N) * rail.alpha;
    best = std::min(best, std::max(intra_bw_s, tree_bw_s) + intra_lat + tree_lat);
  }
  return best;
}

// Note [Measured curve]
// A fitted Link is two numbers; a real transport is not always that simple (Open MPI's shared memory on our CPU
// machine runs 4 MiB at 10 GB/s of bus bandwidth and 32 MiB at 0.7, its large-message path page-faulting a fresh
// buffer on every call). When the profile carries a measured all-reduce curve, a collective inside one node costs
// what the curve says: interpolated linearly in log(bytes)-log(time) between its points, flat below the smallest
// size, and proportional to size beyond the largest. A curve measured on m ranks is moved to n ranks by splitting
// it with its fit's alpha into the ring's latency part 2(m-1) alpha, scaled by (n-1)/(m-1), and the rest, the
// bandwidth part, scaled by the ring's traffic ratio ((n-1)/n) / ((m-1)/m). The points include the call's own cost,
// so collective_launch_s is not added. Reduce-scatter and all-gather take half (the ring's split of an all-reduce).
double curve_all_reduce_s(const MeasuredCurve& m, double S, int n) {
  const auto& b = m.bytes;
  const auto& t = m.seconds;
  double at;
  if (S <= b.front()) {
    at = t.front();
  } else if (S >= b.back()) {
    at = t.back() * S / b.back();
  } else {
    size_t i = size_t(std::upper_bound(b.begin(), b.end(), S) - b.begin()) - 1;
    const double f = std::log(S / b[i]) / std::log(b[i + 1] / b[i]);
    at = S == b[i] ? t[i] : std::exp(std::log(t[i]) + f * std::log(t[i + 1] / t[i]));
  }
  const double mr = m.ranks, lat = std::min(at, 2.0 * (mr - 1) * m.alpha), bw = at - lat;
  return lat * (n - 1.0) / (mr - 1) + bw * ((n - 1.0) / n) / ((mr - 1) / mr);
}

bool use_curve(const Hardware& hw, int n) { return hw.intra_measured.ranks > 1 && place(hw, n).N == 1; }

void check_args(double bytes, int n) {
  MC_CHECK(n >= 1, "collective over %d devices", n);
  MC_CHECK(bytes >= 0 && std::isfinite(bytes), "collective of %g bytes", bytes);
}

CollectiveCost finish(const Hardware& hw, double seconds, Algo a) {
  return {seconds + hw.collective_launch_s, a};
}

// Reduce-scatter or all-gather (phase 1).
CollectiveCost half_collective(const Hardware& hw, double bytes, int n, Algo algo) {
  check_args(bytes, n);
  if (n <= 1 || bytes <= 0) return {0, algo == Algo::Hier ? Algo::Hier : Algo::Ring};
  if (use_curve(hw, n)) return {curve_all_reduce_s(hw.intra_measured, bytes, n) / 2, Algo::Ring};
  if (algo == Algo::Ring) return finish(hw, ring_cost(hw, bytes, n, 1), Algo::Ring);
  if (algo == Algo::Hier) return finish(hw, hier_cost(hw, bytes, n, 1), Algo::Hier);
  const double r = ring_cost(hw, bytes, n, 1), h = hier_cost(hw, bytes, n, 1);  // Auto, and Tree as Auto
  return h < r ? finish(hw, h, Algo::Hier) : finish(hw, r, Algo::Ring);
}

}  // namespace

CollectiveCost all_reduce(const Hardware& hw, double bytes, int n, Algo algo) {
  check_args(bytes, n);
  if (n <= 1 || bytes <= 0) return {0, algo == Algo::Auto ? Algo::Ring : algo};
  if (use_curve(hw, n)) return {curve_all_reduce_s(hw.intra_measured, bytes, n), Algo::Ring};
  switch (algo) {
    case Algo::Ring: return finish(hw, ring_cost(hw, bytes, n, 2), Algo::Ring);
    case Algo::Tree: return finish(hw, tree_cost(hw, bytes, n), Algo::Tree);
    case Algo::Hier: return finish(hw, hier_cost(hw, bytes, n, 2), Algo::Hier);
    case Algo::Auto: break;
  }
  CollectiveCost best{ring_cost(hw, bytes, n, 2), Algo::Ring};
  const double h = hier_cost(hw, bytes, n, 2), t = tree_cost(hw, bytes, n);
  if (h < best.seconds) best = {h, Algo::Hier};
  if (t < best.seconds) best = {t, Algo::Tree};
  return finish(hw, best.seconds, best.algo);
}

CollectiveCost reduce_scatter(const Hardware& hw, double bytes, int n, Algo algo) {
  return half_collective(hw, bytes, n, algo);
}

CollectiveCost all_gather(const Hardware& hw, double bytes, int n, Algo algo) {
  return half_collective(hw, bytes, n, algo);
}

namespace {

// Parses all of token as a finite number.
bool parse_number(const std::string& token, double* out) {
  if (token.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(token.c_str(), &end);
  if (end != token.c_str() + token.size() || errno == ERANGE || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

}  // namespace

// The table bench_allreduce.cpp prints (rank 0's stdout):
//   # minicolossus bench-allreduce: backend mpi, 2 ranks, dtype float, op sum, device cpu, iters 20, warmup 5
//        size(B)        count     type     time(us)  algbw(GB/s)  busbw(GB/s)   #wrong
//              8            2    float         7.54        0.001        0.001        0
//   # avg busbw: 2.573 GB/s over 24 sizes
BenchTable read_bench_table(const std::string& path) {
  const std::string text = read_input_file(path, "bench-allreduce table", size_t(64) << 20);
  BenchTable t;
  bool header = false;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    if (line[first] == '#') {
      const std::string tag = "# minicolossus bench-allreduce: backend ";
      if (line.compare(first, tag.size(), tag) != 0) continue;  // a comment
      MC_REQUIRE(!header, "%s:%d: a second bench-allreduce header (one table per file)", path.c_str(), lineno);
      char backend[64] = {0};
      int ranks = 0;
      MC_REQUIRE(std::sscanf(line.c_str() + first + tag.size(), "%63[^,], %d rank", backend, &ranks) == 2 && ranks >= 1,
                 "%s:%d: cannot read the backend and rank count from the header", path.c_str(), lineno);
      t.backend = backend;
      t.ranks = ranks;
      header = true;
      continue;
    }
    std::istringstream fields(line);
    std::vector<std::string> tok;
    for (std::string s; fields >> s;) tok.push_back(s);
    if (tok.size() == 7 && tok[0] == "size(B)") continue;  // the column titles
    MC_REQUIRE(header, "%s:%d: a row before the '# minicolossus bench-allreduce: backend ...' header (is this "
               "the output of minicolossus bench-allreduce?)", path.c_str(), lineno);
    BenchRow r;
    double us = 0, wrong = 0;
    MC_REQUIRE(tok.size() == 7 && parse_number(tok[0], &r.bytes) && parse_number(tok[3], &us) &&
                   parse_number(tok[6], &wrong),
               "%s:%d: not a bench-allreduce row (expected: size(B) count type time(us) algbw busbw #wrong)",
               path.c_str(), lineno);
    MC_REQUIRE(r.bytes > 0 && us > 0, "%s:%d: size and time must be positive", path.c_str(), lineno);
    MC_REQUIRE(wrong == 0, "%s:%d: the all-reduce of %s bytes gave %s wrong elements: its time measures nothing",
               path.c_str(), lineno, tok[0].c_str(), tok[6].c_str());
    r.seconds = us * 1e-6;
    t.rows.push_back(r);
  }
  MC_REQUIRE(header, "%s: no '# minicolossus bench-allreduce: backend ...' header: not a bench-allreduce table",
             path.c_str());
  MC_REQUIRE(t.rows.size() >= 2, "%s: %zu row%s; a fit needs at least 2 message sizes", path.c_str(), t.rows.size(),
             t.rows.size() == 1 ? "" : "s");
  return t;
}

// t(S) = a + b S by least squares with weights 1/t^2 (relative errors: a 8-byte row counts as much as a 64 MiB one).
// The ring formula on one link is a = 2(n-1) alpha, b = 2(n-1)/(n bw). Sizes are scaled by the largest for
// conditioning. A negative intercept (noise, or caches making mid sizes fast) is clamped to 0 and b refitted.
Link fit_ring_link(const BenchTable& t) {
  const int n = t.ranks;
  MC_REQUIRE(n >= 2, "bench-allreduce table of %d rank: a 1-rank all-reduce crosses no link (run it with mpirun "
             "-np 2 or more)", n);
  MC_REQUIRE(t.rows.size() >= 2, "bench-allreduce table with %zu rows: a fit needs at least 2", t.rows.size());
  double smax = 0;
  for (const auto& r : t.rows) {
    MC_REQUIRE(r.bytes > 0 && r.seconds > 0 && std::isfinite(r.bytes) && std::isfinite(r.seconds),
               "bench-allreduce table: row of %g bytes in %g s: both must be positive", r.bytes, r.seconds);
    smax = std::max(smax, r.bytes);
  }
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& r : t.rows) {
    const double w = 1.0 / (r.seconds * r.seconds), x = r.bytes / smax, y = r.seconds;
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
  }
  const double det = sw * sxx - sx * sx;
  MC_REQUIRE(det > 1e-12 * sw * sxx, "bench-allreduce table: all rows have the same size; a fit needs 2 sizes");
  double b = (sw * sxy - sx * sy) / det;
  double a = (sy - b * sx) / sw;
  if (a < 0) {
    a = 0;
    b = sxy / sxx;
  }
  MC_REQUIRE(b > 0, "bench-allreduce table: the time does not grow with the size; no bandwidth can be fitted");
  b /= smax;  // seconds per byte
  return {2.0 * (n - 1) / n / b, a / (2.0 * (n - 1))};
}

MeasuredCurve curve_from_table(const BenchTable& t) {
  MeasuredCurve m;
  m.ranks = t.ranks;
  m.alpha = fit_ring_link(t).alpha;
  std::vector<BenchRow> rows = t.rows;
  std::sort(rows.begin(), rows.end(), [](const BenchRow& a, const BenchRow& b) { return a.bytes < b.bytes; });
  for (const BenchRow& r : rows) {
    if (!m.bytes.empty() && r.bytes == m.bytes.back()) continue;
    m.bytes.push_back(r.bytes);
    m.seconds.push_back(m.seconds.empty() ? r.seconds : std::max(r.seconds, m.seconds.back()));
  }
  return m;
}

}  // namespace mc::sim
