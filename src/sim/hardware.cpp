// Built-in hardware profiles (this 2-core CPU machine, measured; H100 SXM; H200 SXM) and their JSON form with human
// units, for `minicolossus simulate --hardware`. Every value below says where it comes from.
// Invariant: a Hardware returned here has passed the checks of kFields (positive where a zero would divide, >= 0
// where 0 means "none", efficiencies in (0, 1]); a JSON field named here has the unit its key names.
#include "sim/hardware.h"

#include <sys/stat.h>

#include <cmath>
#include <functional>
#include <limits>

#include "core/errors.h"
#include "core/files.h"
#include "sim/collectives.h"

namespace mc::sim {
namespace {

// Note [H100 profile]
// Compute: 989 TFLOP/s dense bf16 is NVIDIA's H100 SXM datasheet figure (1979 with 2:4 sparsity). A bf16
// 8192^3 GEMM measured ~790 TFLOP/s on the project's GPU machine (../shared/ENVIRONMENT.md), so matmul_eff 0.80.
// Memory: HBM3 at 3.35 TB/s (datasheet); a device-to-device copy measured ~3.0 TB/s there, so mem_eff 0.85
// (element-wise kernels read and write like a copy, and rarely do better). Capacity: nvidia-smi reports 81559 MiB
// on an H100 80GB; we take 81559 MiB less 512 MiB that the CUDA context holds before the first allocation, i.e.
// 79.15 GiB that allocations can use (cuBLAS workspaces and NCCL buffers are left to the memory model).
// NVLink: 18 NVLink-4 links, 900 GB/s bidirectional = 450 GB/s per direction through the NVSwitches. What a
// collective achieves is lower: nccl-tests all_reduce_perf on 8 H100 SXM (DGX H100) reports ~370 GB/s bus bandwidth
// for large messages with the ring algorithm, and ~480 GB/s with NVLink SHARP (NVLS), so intra.bw = 370e9 and
// nvls_bw = 480e9: with these, the ring formula of collectives.cpp reproduces the published bus bandwidths.
// intra.alpha 0.6 us is NCCL's own per-step NVLink latency for rings with the LL protocol (hwLat in NCCL's
// src/graph/tuning.cc); collective_launch 6 us is of the order of its per-collective base latency (baseLat there).
// Network: one 400 Gb/s NIC (ConnectX-7) per GPU = 50 GB/s line rate; RDMA reaches ~90% of it with large messages,
// so inter.bw = 45e9. inter.alpha 5 us (assumption: NIC, PCIe and the proxy thread per message; NCCL's network
// step latencies are 2.7 us for LL and up to 14 us for the Simple protocol). hop_latency 0.5 us per switch
// (assumption: Ethernet/InfiniBand switch port-to-port latency plus ~30 m of fibre). switch_radix 128: a 51.2 Tb/s
// switch has 128 ports of 400 Gb/s. Topology "rail": GPU i of every node shares the same leaf switches (the
// rail-optimised design of DGX SuperPODs and of Llama 3's cluster).
// Failures: Llama 3's rate (kLlama3FailuresPerGpuHour), a parameter like any other.
// Checkpoints (assumption): 5 GB/s write and read. Our trainer writes a checkpoint from rank 0 alone, synchronously,
// so what counts is one client's bandwidth to the file system (a parallel file system client or a local NVMe
// drive: 5-10 GB/s), not the file system's aggregate; on resume every rank reads the file, each at that rate.
// restart_s 600 (assumption): detect the failure (watchdog timeout), reschedule on spare nodes, start the
// processes and initialise NCCL at scale; reading the checkpoint is priced separately with ckpt_read_bw.
Hardware make_h100() {
  Hardware h;
  h.name = "h100";
  h.description = "NVIDIA H100 SXM 80GB, 8 per node on NVLink 4 (NVLS), one 400 Gb/s NIC per GPU, rail-optimised";
  h.peak_flops = 989e12;
  h.matmul_eff = 0.80;
  h.mem_bw = 3.35e12;
  h.mem_eff = 0.85;
  h.micro_step_overhead_s = 20e-6;  // assumption: host work and launches not hidden behind the GPU, per micro-step
  h.mem_bytes = (81559.0 - 512.0) * 1048576.0;
  h.act_bytes = 2;
  h.devices_per_node = 8;
  h.cores_per_node = 0;
  h.overlap_slowdown = 0;  // NCCL runs on a few SMs: small, left to calibration
  h.intra = {370e9, 0.6e-6};
  h.nvls_bw = 480e9;
  h.inter = {45e9, 5e-6};
  h.hop_latency = 0.5e-6;
  h.switch_radix = 128;
  h.topology = "rail";
  h.collective_launch_s = 6e-6;
  h.failures_per_device_hour = kLlama3FailuresPerGpuHour;
  h.ckpt_write_bw = 5e9;
  h.ckpt_read_bw = 5e9;
  h.restart_s = 600;
  return h;
}

// H200 SXM: the H100's compute die, NVLink and network (the same HGX board design), with 141 GB of HBM3e at
// 4.8 TB/s (datasheet). A device copy measured ~4.3 TB/s on the project's H200 (ENVIRONMENT.md): mem_eff 0.9.
// Capacity: nvidia-smi reports 143771 MiB; less 512 MiB for the CUDA context as for the H100.
Hardware make_h200() {
  Hardware h = make_h100();
  h.name = "h200";
  h.description = "NVIDIA H200 SXM 141GB, 8 per node on NVLink 4 (NVLS), one 400 Gb/s NIC per GPU, rail-optimised";
  h.mem_bw = 4.8e12;
  h.mem_eff = 0.90;
  h.mem_bytes = (143771.0 - 512.0) * 1048576.0;
  return h;
}

// Note [CPU profile]
// This development machine: 2 cores of an AMD EPYC (Zen 4: family 25 model 17) in a KVM guest, 23.5 GiB, no GPU.
// A "device" is one rank running with OMP_NUM_THREADS=1, i.e. one core: devices_per_node 2 and cores_per_node 2
// (more ranks than cores share them; the step model slows them down by ranks/cores). Compute is fp32 (act_bytes 4).
// Measured with scratch programs (g++ -O2, one thread, idle machine):
// - clock: a loop of dependent register adds (one per cycle) ran 3.48-3.57 G iterations/s: ~3.55 GHz (the TSC says
//   2.6 GHz; the core boosts). Zen 4 issues two 256-bit FMAs per cycle (AVX-512 is split in halves), 32 fp32 FLOP
//   per cycle, so peak_flops = 32 * 3.55e9 = 113.6 GFLOP/s per core. (The trainer's --peak-tflops default for cpu,
//   0.19 for the 2 cores, is rather what sgemm reaches: its MFU reads ~15% higher than simulate's.)
// - matmul_eff: OpenBLAS cblas_sgemm, row-major, no transpose, openblas_set_num_threads(1), after one warm-up:
//   768^3 98-102, 1024^3 95, 2048^3 94-99 GFLOP/s; 96 / 113.6 = 0.845.
// - mem_bw: memcpy of 1 GiB, best of 5 after a warm-up copy: 11.9 GB/s copied = 23.8 GB/s of read + write traffic.
//   mem_eff 1: that copy is already what a loop reaches (the GPUs' mem_eff is copy / datasheet); calibrate_compute
//   refines it from the optimizer's measured time.
// - ckpt: write() of 100 MB to /tmp then fsync: 0.072 s = 1.39 GB/s; reads taken equal (conservative: the page cache
//   serves a checkpoint just written far faster).
// mem_bytes: MemTotal of /proc/meminfo, 24684084 KiB. It is the memory of the whole NODE, shared by its ranks: for
// profiles with cores_per_node > 0 the memory model divides it by the ranks per node.
// intra: Open MPI's shared-memory transport between 2 ranks, fit_ring_link of the table of
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 build-a/minicolossus bench-allreduce
//       --max-bytes 64M
// (24 sizes, 8 B to 64 MiB): bw 6.98 GB/s, alpha 3.87 us; the fit's alpha includes the per-call cost, so
// collective_launch_s is 0. Caveat: the fit follows sizes up to 4 MiB within ~30%, but from 8 MiB up Open MPI
// page-faults a fresh temporary buffer on every call (~8,200 minor faults per 32 MiB all-reduce) and the measured
// bus bandwidth falls to 1.8-1.9 GB/s at 32-64 MiB, 4x slower than the fit: a 25 MiB bucket costs ~10-15 ms, not ~3.6.
// inter: there is no network here. The profile takes the network-namespace test bed's TCP (ENVIRONMENT.md: 75 us
// round trip, ~37 us one way) with the shared-memory bandwidth; collectives.cpp never uses it, since a cpu profile
// is one node however many ranks it runs.
// overlap_slowdown and overlap_preempt_s: Note [CPU overlap].
// restart_s 5: starting the processes again on one machine (assumption).
constexpr double kCpuPeakGflops = 32 * 3.55;
constexpr double kCpuSgemmGflops = 96;
constexpr double kCpuMemcpyGbs = 23.8;   // read + write traffic of one-thread memcpy
constexpr double kCpuIntraBwGbs = 6.98;  // fit_ring_link of the 2-rank bench-allreduce table
constexpr double kCpuIntraAlphaUs = 3.87;
constexpr double kCpuCkptGbs = 1.39;

// The same 2-rank table as points (bytes, microseconds), for the single-node curve (Note [Measured curve] in
// collectives.cpp), measured again by the lead with the same command (iters 20, warmup 5):
const double kCpuAllReduce[][2] = {
    {8, 5.51},           {16, 5.43},          {32, 5.21},         {64, 5.20},          {128, 5.23},
    {256, 5.44},         {512, 5.52},         {1024, 5.54},       {2048, 7.70},        {4096, 6.34},
    {8192, 10.02},       {16384, 13.45},      {32768, 16.50},     {65536, 25.18},      {131072, 34.01},
    {262144, 58.66},     {524288, 93.76},     {1048576, 112.95},  {2097152, 338.29},   {4194304, 403.40},
    {8388608, 4601.11},  {16777216, 13241.44}, {33554432, 50799.92}, {67108864, 71398.90}};

// Note [CPU overlap]
// On the GPU a bucket's all-reduce runs beside backward at little cost to it. On this CPU each rank has one compute
// thread and one communication thread (Note [Worker thread] in comm_mpi.cpp), 2 ranks put 4 threads on 2 cores, and
// a collective's thread busy-polls from its launch until the peer joins and the transfer ends. Measured (d6, batch
// 2 x 256, 2 ranks, OMP_NUM_THREADS=1): forward+backward grows by +12 ms with 25 MiB buckets, +48 ms with 8 MiB,
// +59 ms with 4 MiB and +121 ms with 1 MiB, over 442 ms on 1 rank, far more than the transfers themselves take
// (~5 ms for all the gradients in 1 MiB pieces). Two terms: the transfer takes a core while it runs
// (overlap_slowdown 1: copies and reductions are CPU work and no core is idle), and each time the communication
// thread is woken from idle, it preempts the compute thread for about a scheduler time slice (overlap_preempt_s).
// Buckets that are launched while the previous one is still in flight cost no wake-up: 1 MiB buckets become ready
// 7 at a time, at the end of each layer, and wake the thread once per layer. The wake-up cost was measured on a run
// kept out of bench_simulate.sh's prediction set: 2 ranks, --bucket-mb 4, forward+backward 500.8 ms over 8 steps
// after 2 warm-up steps, where simulate (calibrated on that session's 1-rank run and 2-rank bench-allreduce table,
// overlap_preempt 0) predicts 446.0 ms with 6 wake-ups: (500.8 - 446.0) / 6 = 9.1 ms.
constexpr double kCpuOverlapPreemptMs = 9.1;

Hardware make_cpu() {
  Hardware h;
  h.name = "cpu";
  h.description = "this development machine: 2 cores of an AMD EPYC (Zen 4), one rank per core, fp32, shared memory";
  h.peak_flops = kCpuPeakGflops * 1e9;
  h.matmul_eff = kCpuSgemmGflops / kCpuPeakGflops;
  h.mem_bw = kCpuMemcpyGbs * 1e9;
  h.mem_eff = 1;
  h.micro_step_overhead_s = 0;
  h.mem_bytes = 24684084.0 * 1024.0;
  h.act_bytes = 4;
  h.devices_per_node = 2;
  h.cores_per_node = 2;
  h.overlap_slowdown = 1;
  h.overlap_preempt_s = kCpuOverlapPreemptMs * 1e-3;
  h.intra = {kCpuIntraBwGbs * 1e9, kCpuIntraAlphaUs * 1e-6};
  BenchTable t;
  t.ranks = 2;
  for (const auto& p : kCpuAllReduce) t.rows.push_back({p[0], p[1] * 1e-6});
  h.intra_measured = curve_from_table(t);
  h.nvls_bw = 0;
  h.inter = {kCpuIntraBwGbs * 1e9, 37e-6};
  h.hop_latency = 0;
  h.switch_radix = 128;
  h.topology = "rail";
  h.collective_launch_s = 0;
  h.failures_per_device_hour = kLlama3FailuresPerGpuHour;
  h.ckpt_write_bw = kCpuCkptGbs * 1e9;
  h.ckpt_read_bw = kCpuCkptGbs * 1e9;
  h.restart_s = 5;
  return h;
}

// One JSON field: its key, its unit (SI value = JSON value * scale), its range, and where it lives in Hardware.
enum class Kind { Real, Int, Text };
enum class Range { Positive, NonNegative, Fraction, ActBytes, AtLeast1, Radix, Topology, NonEmpty, Any };
struct Field {
  const char* key;
  Kind kind;
  double scale;  // Real: SI units per JSON unit
  Range range;
  std::function<double&(Hardware&)> real;
  std::function<int&(Hardware&)> integer;
  std::function<std::string&(Hardware&)> text;
};

Field real(const char* key, double scale, Range r, std::function<double&(Hardware&)> f) {
  return {key, Kind::Real, scale, r, std::move(f), nullptr, nullptr};
}
Field integer(const char* key, Range r, std::function<int&(Hardware&)> f) {
  return {key, Kind::Int, 1, r, nullptr, std::move(f), nullptr};
}
Field text(const char* key, Range r, std::function<std::string&(Hardware&)> f) {
  return {key, Kind::Text, 1, r, nullptr, nullptr, std::move(f)};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      text("name", Range::NonEmpty, [](Hardware& h) -> std::string& { return h.name; }),
      text("description", Range::Any, [](Hardware& h) -> std::string& { return h.description; }),
      real("peak_tflops", 1e12, Range::Positive, [](Hardware& h) -> double& { return h.peak_flops; }),
      real("matmul_eff", 1, Range::Fraction, [](Hardware& h) -> double& { return h.matmul_eff; }),
      real("mem_bw_gbs", 1e9, Range::Positive, [](Hardware& h) -> double& { return h.mem_bw; }),
      real("mem_eff", 1, Range::Fraction, [](Hardware& h) -> double& { return h.mem_eff; }),
      real("micro_step_overhead_us", 1e-6, Range::NonNegative,
           [](Hardware& h) -> double& { return h.micro_step_overhead_s; }),
      real("mem_gib", 1073741824.0, Range::Positive, [](Hardware& h) -> double& { return h.mem_bytes; }),
      integer("act_bytes", Range::ActBytes, [](Hardware& h) -> int& { return h.act_bytes; }),
      integer("devices_per_node", Range::AtLeast1, [](Hardware& h) -> int& { return h.devices_per_node; }),
      integer("cores_per_node", Range::NonNegative, [](Hardware& h) -> int& { return h.cores_per_node; }),
      real("overlap_slowdown", 1, Range::NonNegative, [](Hardware& h) -> double& { return h.overlap_slowdown; }),
      real("overlap_preempt_us", 1e-6, Range::NonNegative,
           [](Hardware& h) -> double& { return h.overlap_preempt_s; }),
      real("intra_bw_gbs", 1e9, Range::Positive, [](Hardware& h) -> double& { return h.intra.bw; }),
      real("intra_alpha_us", 1e-6, Range::NonNegative, [](Hardware& h) -> double& { return h.intra.alpha; }),
      real("nvls_bw_gbs", 1e9, Range::NonNegative, [](Hardware& h) -> double& { return h.nvls_bw; }),
      real("inter_bw_gbs", 1e9, Range::Positive, [](Hardware& h) -> double& { return h.inter.bw; }),
      real("inter_alpha_us", 1e-6, Range::NonNegative, [](Hardware& h) -> double& { return h.inter.alpha; }),
      real("hop_latency_us", 1e-6, Range::NonNegative, [](Hardware& h) -> double& { return h.hop_latency; }),
      integer("switch_radix", Range::Radix, [](Hardware& h) -> int& { return h.switch_radix; }),
      text("topology", Range::Topology, [](Hardware& h) -> std::string& { return h.topology; }),
      real("collective_launch_us", 1e-6, Range::NonNegative,
           [](Hardware& h) -> double& { return h.collective_launch_s; }),
      real("failures_per_device_hour", 1, Range::NonNegative,
           [](Hardware& h) -> double& { return h.failures_per_device_hour; }),
      real("ckpt_write_gbs", 1e9, Range::Positive, [](Hardware& h) -> double& { return h.ckpt_write_bw; }),
      real("ckpt_read_gbs", 1e9, Range::Positive, [](Hardware& h) -> double& { return h.ckpt_read_bw; }),
      real("restart_s", 1, Range::NonNegative, [](Hardware& h) -> double& { return h.restart_s; }),
  };
  return f;
}

std::string known_fields() {
  std::string s = "base, intra_measured";
  for (const auto& f : fields()) s += std::string(", ") + f.key;
  return s;
}

// What is wrong with value v for range r, or "" when it is fine.
std::string range_problem(double v, Range r) {
  if (!std::isfinite(v)) return "must be a finite number";
  switch (r) {
    case Range::Positive: return v > 0 ? "" : "must be positive";
    case Range::NonNegative: return v >= 0 ? "" : "must not be negative";
    case Range::Fraction: return v > 0 && v <= 1 ? "" : "must be in (0, 1]";
    case Range::ActBytes: return v == 2 || v == 4 ? "" : "must be 2 (bf16) or 4 (fp32)";
    case Range::AtLeast1: return v >= 1 && v <= (1 << 20) ? "" : "must be between 1 and 1048576";
    // A fat tree needs at least 2 ports down and 2 up per switch (collectives.cpp, fat_tree_hops).
    case Range::Radix: return v >= 4 && v <= 65536 ? "" : "must be between 4 and 65536";
    default: return "";
  }
}

// Checks every field of a profile; `where` starts the message ("--hardware FILE" or the built-in's name).
void validate(Hardware& h, const std::string& where) {
  for (const auto& f : fields()) {
    std::string problem;
    if (f.kind == Kind::Real) problem = range_problem(f.real(h), f.range);
    if (f.kind == Kind::Int) problem = range_problem(f.integer(h), f.range);
    if (f.kind == Kind::Text && f.range == Range::NonEmpty && f.text(h).empty()) problem = "must not be empty";
    if (f.kind == Kind::Text && f.range == Range::Topology && f.text(h) != "rail" && f.text(h) != "fat-tree")
      problem = "must be \"rail\" or \"fat-tree\"";
    MC_REQUIRE(problem.empty(), "%s: field '%s' %s", where.c_str(), f.key, problem.c_str());
  }
}

// Sets field f of h from JSON value v, checking its type and range; `where` names the file.
void set_field(Hardware& h, const Field& f, const nlohmann::json& v, const std::string& where) {
  const char* k = f.key;
  if (f.kind == Kind::Text) {
    MC_REQUIRE(v.is_string(), "%s: field '%s' must be a string, not %s", where.c_str(), k, v.type_name());
    f.text(h) = v.get<std::string>();
    return;
  }
  MC_REQUIRE(v.is_number(), "%s: field '%s' must be a number, not %s", where.c_str(), k, v.type_name());
  const double x = v.get<double>();
  MC_REQUIRE(std::isfinite(x), "%s: field '%s' must be a finite number", where.c_str(), k);
  if (f.kind == Kind::Int) {
    MC_REQUIRE(x == std::floor(x) && std::fabs(x) < 1e9, "%s: field '%s' must be an integer, not %s", where.c_str(),
               k, v.dump().c_str());
    const std::string p = range_problem(x, f.range);
    MC_REQUIRE(p.empty(), "%s: field '%s' %s (got %s)", where.c_str(), k, p.c_str(), v.dump().c_str());
    f.integer(h) = int(x);
    return;
  }
  const std::string p = range_problem(x, f.range);
  MC_REQUIRE(p.empty(), "%s: field '%s' %s (got %s)", where.c_str(), k, p.c_str(), v.dump().c_str());
  const double si = x * f.scale;
  MC_REQUIRE(std::isfinite(si), "%s: field '%s' %s is out of range", where.c_str(), k, v.dump().c_str());
  f.real(h) = si;
}

// "intra_measured": {"ranks": m, "alpha_s": a, "bytes": [...], "seconds": [...]} (hardware_json writes it; SI units
// so that it round-trips exactly), or null
// for none. Points must be ascending in bytes, positive, and as many times as sizes.
MeasuredCurve curve_from_json(const nlohmann::json& v, const std::string& where) {
  MeasuredCurve m;
  if (v.is_null()) return m;
  const std::string what = where + ": field 'intra_measured'";
  MC_REQUIRE(v.is_object() && v.size() == 4 && v.contains("ranks") && v.contains("alpha_s") && v.contains("bytes") &&
                 v.contains("seconds") && v["ranks"].is_number_integer() && v["alpha_s"].is_number() &&
                 v["bytes"].is_array() && v["seconds"].is_array(),
             "%s must be null or {\"ranks\": int, \"alpha_s\": number, \"bytes\": [...], \"seconds\": [...]}",
             what.c_str());
  const int ranks = v["ranks"].get<int>();
  const double alpha = v["alpha_s"].get<double>();
  MC_REQUIRE(ranks >= 2 && ranks <= 1000000, "%s: ranks must be in [2, 1000000]", what.c_str());
  MC_REQUIRE(std::isfinite(alpha) && alpha >= 0 && alpha < 1, "%s: alpha_s must be in [0, 1)", what.c_str());
  const auto& b = v["bytes"];
  const auto& t = v["seconds"];
  MC_REQUIRE(b.size() == t.size() && b.size() >= 2 && b.size() <= 10000,
             "%s: bytes and seconds must be arrays of the same length, 2 to 10000 points", what.c_str());
  BenchTable table;
  table.ranks = ranks;
  for (size_t i = 0; i < b.size(); ++i) {
    MC_REQUIRE(b[i].is_number() && t[i].is_number(), "%s: point %zu is not a pair of numbers", what.c_str(), i);
    const double bytes = b[i].get<double>(), sec = t[i].get<double>();
    MC_REQUIRE(std::isfinite(bytes) && std::isfinite(sec) && bytes > 0 && sec > 0 && bytes < 1e15 && sec < 1e6 &&
                   (i == 0 || bytes > b[i - 1].get<double>()),
               "%s: point %zu must have positive size and time, sizes ascending", what.c_str(), i);
    table.rows.push_back({bytes, sec});
  }
  m = curve_from_table(table);
  m.alpha = alpha;
  return m;
}

bool is_builtin(const std::string& name) {
  for (const auto& n : hardware_names())
    if (n == name) return true;
  return false;
}

std::string names_list() {
  std::string s;
  for (const auto& n : hardware_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

std::vector<std::string> hardware_names() { return {"cpu", "h100", "h200"}; }

Hardware builtin_hardware(const std::string& name) {
  Hardware h;
  if (name == "cpu") h = make_cpu();
  else if (name == "h100") h = make_h100();
  else if (name == "h200") h = make_h200();
  else throw UsageError("--hardware " + name + ": not a built-in profile (" + names_list() + ")");
  validate(h, "built-in profile " + name);
  return h;
}

Hardware load_hardware(const std::string& name_or_path) {
  if (is_builtin(name_or_path)) return builtin_hardware(name_or_path);
  struct stat st;
  MC_REQUIRE(!name_or_path.empty() && ::stat(name_or_path.c_str(), &st) == 0,
             "--hardware %s: not a built-in profile (%s) nor a JSON file", name_or_path.c_str(), names_list().c_str());
  // read_input_file refuses directories, FIFOs and devices without blocking, naming --hardware and the path.
  const std::string text = read_input_file(name_or_path, "--hardware", size_t(1) << 20);
  const std::string where = "--hardware " + name_or_path;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error (with its position) or out_of_range (1e400)
    throw UsageError(where + ": not valid JSON: " + e.what());
  }
  MC_REQUIRE(j.is_object(), "%s: must be a JSON object {\"base\": \"h100\", <field>: value, ...}, not %s",
             where.c_str(), j.type_name());
  std::string base = "h100";
  if (j.contains("base")) {
    MC_REQUIRE(j["base"].is_string(), "%s: field 'base' must be a string, not %s", where.c_str(),
               j["base"].type_name());
    base = j["base"].get<std::string>();
    MC_REQUIRE(is_builtin(base), "%s: field 'base' \"%s\" is not a built-in profile (%s)", where.c_str(),
               base.c_str(), names_list().c_str());
  }
  Hardware h = builtin_hardware(base);
  // Unless the file names itself, the profile is called after the file.
  std::string stem = name_or_path.substr(name_or_path.find_last_of('/') + 1);
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0) stem.resize(stem.size() - 5);
  h.name = stem.empty() ? base : stem;
  h.description += " (with the overrides of " + name_or_path + ")";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "base") continue;
    if (it.key() == "intra_measured") {
      h.intra_measured = curve_from_json(it.value(), where);
      continue;
    }
    const Field* f = nullptr;
    for (const auto& c : fields())
      if (it.key() == c.key) f = &c;
    MC_REQUIRE(f, "%s: unknown field '%s' (known: %s)", where.c_str(), it.key().c_str(), known_fields().c_str());
    set_field(h, *f, it.value(), where);
  }
  validate(h, where);
  return h;
}

nlohmann::json hardware_json(const Hardware& hw) {
  Hardware h = hw;  // the accessors take a mutable profile
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : fields()) {
    if (f.kind == Kind::Text) j[f.key] = f.text(h);
    else if (f.kind == Kind::Int) j[f.key] = f.integer(h);
    else j[f.key] = f.real(h) / f.scale;
  }
  if (hw.intra_measured.ranks > 0) {
    j["intra_measured"] = {{"ranks", hw.intra_measured.ranks},
                           {"alpha_s", hw.intra_measured.alpha},
                           {"bytes", hw.intra_measured.bytes},
                           {"seconds", hw.intra_measured.seconds}};
  } else {
    j["intra_measured"] = nullptr;
  }
  return j;
}

}  // namespace mc::sim
