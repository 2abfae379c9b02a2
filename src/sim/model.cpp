// The step, memory and failure model of `minicolossus simulate` (see model.h).
#include "sim/model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/files.h"
#include "dist/grad_sync.h"

namespace mc::sim {

namespace {
// Note [Simulated compute]
// A part of the step costs flops / (peak * matmul_eff) + bytes / (mem_bw * mem_eff): its matrix
// multiplies at the rate the profile's GEMMs reach, plus its element-wise traffic at the rate its
// memory reaches. FLOPs are the trainer's own count (flops_per_token: 6N + 12LCT), split 1:2 between
// forward and backward, the classifier's 6*C*Vp per token apart from the layers. Traffic: the forward
// writes every activation once and reads about as much (kForwardPasses); the backward reads them and
// writes and re-reads gradient scratch of the same size (kBackwardPasses). Activation bytes per token
// are the trainer's own buffers (GPT2::memory_bytes at B = T = 1 minus the fixed part).
constexpr double kForwardPasses = 2.0, kBackwardPasses = 4.0;

DType act_dtype(const Hardware& hw) { return hw.act_bytes == 2 ? DType::BF16 : DType::F32; }

double act_bytes_per_token(const ModelConfig& m, const Hardware& hw) {
  return GPT2::activation_bytes(m, 1, 1, act_dtype(hw));
}

// Devices sharing one node with this one, and the slowdown from sharing cores (CPU profiles only).
int ranks_per_node(const Hardware& hw, int n) { return hw.cores_per_node > 0 ? n : std::min(n, hw.devices_per_node); }
double core_sharing(const Hardware& hw, int rpn) {
  return hw.cores_per_node > 0 ? std::max(1.0, double(rpn) / hw.cores_per_node) : 1.0;
}

double seconds_for(const Hardware& hw, double flops, double bytes) {
  return flops / (hw.peak_flops * hw.matmul_eff) + bytes / (hw.mem_bw * hw.mem_eff);
}

// Bytes AdamW and the gradient norm touch per parameter of the shard (Note [Simulated compute]): read
// the gradient (norm, then the update), read and write the fp32 master, m and v, write the compute copy
// when it is not the master itself.
double optimizer_bytes_per_param(const SimConfig& c, const Hardware& hw) {
  return 2.0 * c.grad_bytes + 6.0 * 4.0 + (hw.act_bytes != 4 ? hw.act_bytes : 0);
}

double checkpoint_bytes(const SimConfig& c) {  // our checkpoint: fp32 params, m and v
  return 12.0 * double(make_layout(c.model).total);
}
}  // namespace

double MicroStep::backward_s() const {
  double s = 0;
  for (const auto& b : backward) s += b.seconds;
  return s;
}

MicroStep micro_step(const SimConfig& c, const Hardware& hw, int rpn) {
  const ModelConfig& m = c.model;
  const ParamLayout lay = make_layout(m);
  const double tokens = double(c.B) * c.T, C = m.channels, Vp = m.padded_vocab_size;
  const int L = m.num_layers;
  const double cls_flops = 6.0 * C * Vp;  // per token, forward + backward
  const double layer_flops = (flops_per_token(m, c.T) - cls_flops) / L;
  const double act = act_bytes_per_token(m, hw);
  const double cls_act = Vp * hw.act_bytes + 3.0 * C * hw.act_bytes;  // logits, lnf and its gradient
  const double embed_act = 2.0 * C * hw.act_bytes;                      // encoded and its gradient
  const double layer_act = std::max(0.0, act - cls_act - embed_act) / L;
  const double share = core_sharing(hw, rpn);

  MicroStep s;
  auto part = [&](double flops, double bytes) {
    s.flops += flops;
    s.bytes += bytes;
    return share * seconds_for(hw, flops, bytes);
  };
  s.forward_s = share * hw.micro_step_overhead_s +
                part(tokens * (cls_flops + L * layer_flops) / 3.0, tokens * kForwardPasses * act);
  auto seg = [&](double flops, double bytes, size_t ready) {
    s.backward.push_back({part(tokens * flops * 2.0 / 3.0, tokens * kBackwardPasses * bytes), ready});
  };
  seg(cls_flops, cls_act, lay.find("lnf.w").offset);
  for (int l = L - 1; l >= 0; --l) seg(layer_flops, layer_act, lay.find("h." + std::to_string(l) + ".ln1w").offset);
  seg(0.0, embed_act, 0);
  return s;
}

// Note [Simulated timeline]
// As the trainer runs a step (Trainer::train_step, GradSync): grad_accum micro-steps of forward and
// backward; only the last backward communicates. Its segments finish gradients from the end of the
// buffer (Note [Gradient readiness] in gpt2.cpp); bucket i of make_bucket_plan launches once every
// element of it is final, on one communication stream in plan order, so it starts at
// max(ready_i, end_{i-1}). Without overlap every bucket launches when backward ends. The exposed time is
// what is still running when backward ends (GradSync::finish). On a CPU profile the communication thread
// competes with the compute thread for the cores: each bucket launched during backward delays the rest of
// backward (so the readiness of buckets of later segments) by overlap_slowdown times its time overlapped
// with backward, plus overlap_preempt_s when it found the communication stream idle (a wake-up; Note
// [CPU overlap] in hardware.cpp). Then the optimizer:
// the two host all-reduces of loss and norm, AdamW over this device's shard, and under ZeRO the
// all-gather of the fp32 master parameters (as the trainer does). ZeRO-3 (not in the trainer) adds two
// exposed all-gathers of the compute parameters per micro-step (forward and backward; prefetch not modelled).
Timeline simulate_step(const SimConfig& c, const Hardware& hw, int n) {
  const int rpn = ranks_per_node(hw, n);
  const MicroStep ms = micro_step(c, hw, rpn);
  const double bwd = ms.backward_s();
  const double n_params = double(make_layout(c.model).total);
  Timeline t;
  t.compute_s = c.grad_accum * (ms.forward_s + bwd);
  const double share = core_sharing(hw, rpn);
  if (n > 1) {
    const std::vector<Bucket> plan = make_bucket_plan(size_t(n_params), bucket_elems_for_mb(c.bucket_mb));
    t.buckets = int(plan.size());
    double seg_end = 0, stream_end = 0, largest = -1;
    double delay = 0;    // stretch of backward from buckets launched at earlier segments: delays this one
    double pending = 0;  // stretch from buckets launched at the current segment: delays later segments only
    size_t seg = 0;
    std::vector<double> ready_at(ms.backward.size());
    for (size_t k = 0; k < ms.backward.size(); ++k) ready_at[k] = (seg_end += ms.backward[k].seconds);
    for (const Bucket& b : plan) {
      while (seg + 1 < ms.backward.size() && ms.backward[seg].ready_from > b.begin) ++seg, delay += pending, pending = 0;
      const double ready = c.overlap ? ready_at[seg] + delay : bwd;
      const double bytes = double(b.end - b.begin) * c.grad_bytes;
      const CollectiveCost cc = c.zero >= 1 ? reduce_scatter(hw, bytes, n, c.algo) : all_reduce(hw, bytes, n, c.algo);
      const double dur = cc.seconds * share;
      const bool wakes = ready >= stream_end;  // the communication thread was idle: it wakes up
      const double start = std::max(ready, stream_end);
      stream_end = start + dur;
      t.comm_s += dur;
      const double bwd_end = bwd + delay + pending;
      if (c.overlap && start < bwd_end) {
        const double ov = std::min(stream_end, bwd_end) - start;
        t.overlapped_s += ov;
        ++t.overlapped_buckets;
        pending += hw.overlap_slowdown * ov + (wakes ? hw.overlap_preempt_s : 0.0);
        t.wakeups += wakes;
      }
      if (bytes > largest) largest = bytes, t.algo = cc.algo;
    }
    delay += pending;
    t.compute_s += delay;
    t.exposed_s = std::max(0.0, stream_end - (bwd + delay));
  }
  double opt = share * seconds_for(hw, 0, optimizer_bytes_per_param(c, hw) * (c.zero >= 1 ? n_params / n : n_params));
  if (n > 1) {
    opt += 2 * share * all_reduce(hw, 8, n, c.algo).seconds;
    if (c.zero >= 1) opt += share * all_gather(hw, 4.0 * n_params, n, c.algo).seconds;
    if (c.zero == 3) t.exposed_s += c.grad_accum * 2 * share * all_gather(hw, hw.act_bytes * n_params, n, c.algo).seconds;
  }
  t.optimizer_s = opt;
  t.step_s = t.compute_s + t.exposed_s + t.optimizer_s;
  return t;
}

Memory memory_per_device(const SimConfig& c, const Hardware& hw, int n) {
  return estimate_memory(c.model, c.B, c.T, act_dtype(hw), hw.cores_per_node == 0, c.zero, n, c.grad_bytes);
}

double young_interval_s(double delta, double mtbf) { return std::sqrt(2.0 * delta * mtbf); }

double daly_interval_s(double delta, double mtbf) {
  if (delta >= 2.0 * mtbf) return mtbf;
  const double x = delta / (2.0 * mtbf);
  return std::sqrt(2.0 * delta * mtbf) * (1.0 + std::sqrt(x) / 3.0 + x / 9.0) - delta;
}

// Daly (2006): with exponential failures of mean M, work done in segments of tau followed by a checkpoint
// of delta, and a restart of R after each failure, the expected wall time per tau of work is
// M e^{R/M} (e^{(tau+delta)/M} - 1).
double goodput(double tau, double delta, double restart, double mtbf) {
  if (!(mtbf > 0) || std::isinf(mtbf)) return tau / (tau + delta);
  const double wall = mtbf * std::exp(restart / mtbf) * std::expm1((tau + delta) / mtbf);
  return std::isfinite(wall) && wall > 0 ? tau / wall : 0.0;
}

double critical_batch_tokens(const ModelConfig& m) {
  const double non_embedding =
      double(make_layout(m).total) - double(m.padded_vocab_size) * m.channels - double(m.max_seq_len) * m.channels;
  const double loss = std::pow(8.8e13 / std::max(1.0, non_embedding), 0.076);
  return 2e8 / std::pow(loss, 1.0 / 0.21);
}

// ---- calibration -----------------------------------------------------------------------------

namespace {
struct MeasuredStep {
  SimConfig c;
  double micro_s = 0;     // forward + backward of one micro-step
  double opt_s = 0;       // optimizer of one step
  double overhead_s = 0;  // data per micro-step
  int threads = 1;
};

std::vector<MeasuredStep> read_metrics(const std::string& path) {
  const std::string text = read_input_file(path, "--calibrate");
  std::istringstream in(text);
  std::string line;
  std::vector<MeasuredStep> out;
  int lineno = 0, one_rank = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw UsageError(strfmt("--calibrate %s: line %d is not JSON (%s)", path.c_str(), lineno, e.what()));
    }
    static const char* kKeys[] = {"step", "ranks", "fwd_bwd_ms", "opt_ms", "data_ms", "batch", "seq", "grad_accum",
                                  "layers", "heads", "channels", "vocab", "padded_vocab", "max_seq_len"};
    for (const char* k : kKeys)
      MC_REQUIRE(j.is_object() && j.contains(k) && j[k].is_number() && std::isfinite(j[k].get<double>()) &&
                     j[k].get<double>() >= 0 && j[k].get<double>() <= 2147483647.0,
                 "--calibrate %s: line %d has no numeric '%s' in [0, 2^31) (a metrics file of `minicolossus train "
                 "--metrics` is expected, from a version that records step phases)",
                 path.c_str(), lineno, k);
    if (j["ranks"].get<int>() != 1) continue;
    ++one_rank;
    if (j["step"].get<int>() <= 2) continue;  // warm-up steps
    MeasuredStep s;
    s.c.model.num_layers = j["layers"].get<int>();
    s.c.model.num_heads = j["heads"].get<int>();
    s.c.model.channels = j["channels"].get<int>();
    s.c.model.vocab_size = j["vocab"].get<int>();
    s.c.model.padded_vocab_size = j["padded_vocab"].get<int>();
    s.c.model.max_seq_len = j["max_seq_len"].get<int>();
    s.c.B = j["batch"].get<int>();
    s.c.T = j["seq"].get<int>();
    s.c.grad_accum = j["grad_accum"].get<int>();
    MC_REQUIRE(s.c.model.num_layers >= 1 && s.c.model.channels >= 1 && s.c.model.num_heads >= 1 &&
                   s.c.model.padded_vocab_size >= 1 && s.c.model.max_seq_len >= 1 && s.c.B >= 1 && s.c.T >= 1 &&
                   s.c.grad_accum >= 1 && s.c.T <= s.c.model.max_seq_len && s.c.model.num_layers <= 1000 &&
                   s.c.model.channels <= 1 << 20 && s.c.model.padded_vocab_size <= 1 << 24,
               "--calibrate %s: line %d describes an impossible run (model or batch shape out of range)", path.c_str(),
               lineno);
    s.micro_s = j["fwd_bwd_ms"].get<double>() / 1000.0 / s.c.grad_accum;
    s.opt_s = j["opt_ms"].get<double>() / 1000.0;
    s.overhead_s = j["data_ms"].get<double>() / 1000.0 / s.c.grad_accum;
    if (j.contains("omp_threads") && j["omp_threads"].is_number_integer()) s.threads = j["omp_threads"].get<int>();
    out.push_back(s);
  }
  MC_REQUIRE(!out.empty(), "--calibrate %s: no 1-rank steps after the 2 warm-up steps (%d 1-rank lines; calibrate "
             "compute on a run of at least 3 steps on one rank)", path.c_str(), one_rank);
  return out;
}
}  // namespace

// Note [Compute calibration]
// Measured 1-rank steps fix the two efficiencies of Note [Simulated compute]: the optimizer is pure
// memory traffic, so its measured time gives mem_eff; then, with the element-wise part priced at that
// rate, the forward+backward time left gives matmul_eff. The data loading time per micro-step becomes
// micro_step_overhead_s. Sums over all steps of all files, so longer runs weigh more.
std::string calibrate_compute(Hardware& hw, const std::vector<std::string>& files) {
  std::vector<MeasuredStep> steps;
  for (const auto& f : files) {
    auto s = read_metrics(f);
    steps.insert(steps.end(), s.begin(), s.end());
  }
  double opt_bytes = 0, opt_s = 0, overhead = 0, micro = 0;
  int threads = 1;
  for (const auto& s : steps) {
    opt_bytes += optimizer_bytes_per_param(s.c, hw) * double(make_layout(s.c.model).total);
    opt_s += s.opt_s;
    overhead += s.overhead_s;
    micro += s.micro_s;
    threads = std::max(threads, s.threads);
  }
  hw.mem_eff = opt_bytes / (hw.mem_bw * std::max(opt_s, 1e-9));
  hw.micro_step_overhead_s = overhead / double(steps.size());
  double flops = 0, mem_s = 0;  // Note [Simulated compute] is linear in both: split the measured time
  for (const auto& s : steps) {
    const MicroStep m = micro_step(s.c, hw, 1);
    flops += m.flops;
    mem_s += m.bytes / (hw.mem_bw * hw.mem_eff);
  }
  const double left = micro - mem_s;
  MC_REQUIRE(left > 0, "--calibrate: the measured forward+backward time (%.3f s in all) is shorter than its memory "
             "traffic alone at the optimizer's measured bandwidth; the files do not look like this hardware",
             micro);
  hw.matmul_eff = flops / (hw.peak_flops * left);
  std::string line = strfmt(
      "compute calibrated on %zu measured 1-rank steps: matrix multiplies at %.1f%% of %.3g TFLOP/s, memory at %.1f%% "
      "of %.3g GB/s, %.2f ms per micro-step of data loading",
      steps.size(), 100 * hw.matmul_eff, hw.peak_flops / 1e12, 100 * hw.mem_eff, hw.mem_bw / 1e9,
      1e3 * hw.micro_step_overhead_s);
  if (threads > 1 && hw.cores_per_node > 0)
    line += strfmt(" (warning: measured with %d threads per rank, but a device of this profile is one core: run the "
                   "calibration with OMP_NUM_THREADS=1)", threads);
  return line;
}

std::string calibrate_comm(Hardware& hw, const std::vector<std::string>& files) {
  double inv_bw = 0, alpha = 0;
  BenchTable widest;
  for (const auto& f : files) {
    BenchTable t;
    Link l;
    try {
      t = read_bench_table(f);  // its messages name the file
    } catch (const UsageError& e) {
      throw UsageError(std::string("--calibrate-comm ") + e.what());
    }
    try {
      l = fit_ring_link(t);
    } catch (const UsageError& e) {
      throw UsageError("--calibrate-comm " + f + ": " + e.what());
    }
    inv_bw += 1.0 / l.bw;
    alpha += l.alpha;
    if (t.ranks > widest.ranks) widest = t;
  }
  const double k = double(files.size());
  hw.intra.bw = k / inv_bw;
  hw.intra.alpha = alpha / k;
  hw.intra_measured = curve_from_table(widest);  // Note [Measured curve] in collectives.cpp
  hw.nvls_bw = 0;  // a measured table is what the backend achieves, whatever algorithm it chose
  if (hw.cores_per_node > 0) hw.inter = hw.intra;
  return strfmt("links calibrated on %zu bench-allreduce table%s: single-node collectives follow the %d-rank table "
                "(%zu sizes); its fit: %.3g GB/s per direction, %.3g us per ring step",
                files.size(), files.size() == 1 ? "" : "s", widest.ranks, widest.rows.size(), hw.intra.bw / 1e9,
                hw.intra.alpha * 1e6);
}

// ---- the table -------------------------------------------------------------------------------

std::vector<SimRow> simulate(const SimConfig& c, const Hardware& hw, const std::vector<int>& gpus) {
  const double fpt = flops_per_token(c.model, c.T);
  const double bcrit = c.critical_batch_tokens > 0 ? c.critical_batch_tokens : critical_batch_tokens(c.model);
  const double tokens_per_device = double(c.B) * c.T * c.grad_accum;
  const double base_tps = tokens_per_device / simulate_step(c, hw, 1).step_s;
  const double base_batch = tokens_per_device;
  std::vector<SimRow> rows;
  for (int n : gpus) {
    SimRow r;
    r.gpus = n;
    r.nodes = hw.cores_per_node > 0 ? 1 : (n + hw.devices_per_node - 1) / hw.devices_per_node;
    r.mem = memory_per_device(c, hw, n);
    const double sharing = hw.cores_per_node > 0 ? double(n) : 1.0;  // a CPU node's memory is shared
    r.fits = r.mem.total * sharing <= hw.mem_bytes;
    r.t = simulate_step(c, hw, n);
    r.tokens_per_s = double(n) * tokens_per_device / r.t.step_s;
    r.tokens_per_s_per_gpu = r.tokens_per_s / n;
    r.efficiency = r.tokens_per_s_per_gpu / base_tps;
    r.mfu = fpt * r.tokens_per_s_per_gpu / hw.peak_flops;
    r.global_batch_tokens = double(n) * tokens_per_device;
    r.batch_over_critical = r.global_batch_tokens / bcrit;
    const double rate = hw.failures_per_device_hour * n / 3600.0;  // failures per second
    r.mtbf_s = rate > 0 ? 1.0 / rate : INFINITY;
    r.ckpt_write_s = checkpoint_bytes(c) / hw.ckpt_write_bw;
    r.restart_s = hw.restart_s + checkpoint_bytes(c) / hw.ckpt_read_bw;
    r.ckpt_interval_s = std::isfinite(r.mtbf_s) ? daly_interval_s(r.ckpt_write_s, r.mtbf_s) : INFINITY;
    r.goodput = std::isfinite(r.mtbf_s) ? goodput(r.ckpt_interval_s, r.ckpt_write_s, r.restart_s, r.mtbf_s) : 1.0;
    const double useful = r.tokens_per_s * r.goodput;
    r.time_to_tokens_s = useful > 0 ? c.tokens / useful : INFINITY;
    const double same_loss_tokens = c.tokens * (1 + r.global_batch_tokens / bcrit) / (1 + base_batch / bcrit);
    r.time_to_same_loss_s = useful > 0 ? same_loss_tokens / useful : INFINITY;
    rows.push_back(r);
  }
  return rows;
}

}  // namespace mc::sim
