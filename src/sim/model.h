// The step, memory and failure model of `minicolossus simulate`: one data-parallel training step of
// the trainer's own GPT-2 as it runs (forward, backward with gradient buckets launched as they become
// ready, exposed communication, optimizer), the memory each device needs, and what failures and
// checkpoints cost a job of n devices. It shares the trainer's code for the parameter layout
// (make_layout), the FLOP count (flops_per_token), the activation sizes (GPT2::memory_bytes) and the
// bucket plan (make_bucket_plan).
// Invariant: pure functions of (SimConfig, Hardware, n); no I/O.
#pragma once
#include <string>
#include <vector>

#include "model/gpt2.h"
#include "sim/collectives.h"
#include "sim/hardware.h"
#include "train/trainer.h"

namespace mc::sim {

struct SimConfig {
  ModelConfig model;
  std::string model_name = "d12";
  int T = 1024;          // --seq
  int B = 16;            // --batch: sequences per device per micro-step
  int grad_accum = 1;    // --grad-accum
  int zero = 0;          // --zero 0..3
  double bucket_mb = 25; // --bucket-mb (MiB, as the trainer)
  bool overlap = true;   // --no-overlap clears it
  int grad_bytes = 4;    // --grad-dtype: 4 fp32 (the trainer), 2 bf16
  Algo algo = Algo::Auto;
  double tokens = 10e9;  // --tokens: the training budget
  double critical_batch_tokens = 0;  // 0: from Kaplan et al. (critical_batch_tokens())
};

// Compute of one micro-step on one device, split as backward produces gradients.
struct BackwardSegment {
  double seconds = 0;     // compute time of this part of backward
  size_t ready_from = 0;  // after it, gradients at element offsets >= ready_from are final
};
struct MicroStep {
  double flops = 0, bytes = 0;  // priced by Note [Simulated compute]: forward + backward, one device
  double forward_s = 0;
  std::vector<BackwardSegment> backward;  // classifier+lnf, layer L-1, ..., layer 0, embeddings
  double backward_s() const;
};
MicroStep micro_step(const SimConfig& c, const Hardware& hw, int ranks_per_node);

// The backward timeline (Note [Simulated timeline]): buckets of make_bucket_plan launch on one
// communication stream when ready (or all at the end without overlap); what runs past the end of
// backward is exposed.
struct Timeline {
  double compute_s = 0;       // forward + backward of all micro-steps (with overlap interference)
  double comm_s = 0;          // sum of all gradient collective times
  double exposed_s = 0;       // communication still running when backward ends
  double optimizer_s = 0;     // norm, AdamW on this device's shard, ZeRO all-gather
  double step_s = 0;          // compute + exposed + optimizer
  Algo algo = Algo::Ring;     // algorithm of the largest bucket
  int buckets = 0;
  int overlapped_buckets = 0; // buckets launched before backward ends
  int wakeups = 0;            // of those, launched while the communication stream was idle
  double overlapped_s = 0;    // communication time that ran during backward
};
Timeline simulate_step(const SimConfig& c, const Hardware& hw, int n);

// Bytes per device by ZeRO stage: the trainer's own estimate (estimate_memory in train/trainer.h).
using Memory = MemoryEstimate;
Memory memory_per_device(const SimConfig& c, const Hardware& hw, int n);

// Young's interval sqrt(2 delta M) for checkpoint cost delta and MTBF M (seconds).
double young_interval_s(double delta, double mtbf);
// Daly's higher-order interval (Daly 2006), which Young's approximates for delta << M.
double daly_interval_s(double delta, double mtbf);
// Useful time over wall time with checkpoints every tau seconds of work costing delta, restarts costing
// restart (including reading the checkpoint), failures exponential with mean mtbf (Daly's model):
// tau / (M e^{R/M} (e^{(tau+delta)/M} - 1)).
double goodput(double tau, double delta, double restart, double mtbf);

// Critical batch size in tokens (Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
// eq. 1.4 and 5.1): B_crit(L) = 2e8 / L^(1/0.21) tokens at loss L (nats/token), with L the loss
// their L(N) = (8.8e13 / N)^0.076 predicts for N non-embedding parameters.
double critical_batch_tokens(const ModelConfig& m);

// Compute calibration from our own metrics files (train --metrics) of 1-rank runs: sets
// hw.matmul_eff (and the CPU's overlap-free compute) so that the model reproduces their measured
// forward+backward time, and hw.mem_eff from their optimizer time. Returns one line describing it.
// UsageError naming the file for unreadable files, lines that are not our metrics, or no 1-rank steps.
std::string calibrate_compute(Hardware& hw, const std::vector<std::string>& metrics_files);
// Link calibration from bench-allreduce tables: the intra-node link (inter-node for tables whose
// ranks span nodes is not distinguishable, so this sets hw.intra). Returns one line describing it.
std::string calibrate_comm(Hardware& hw, const std::vector<std::string>& bench_files);

struct SimRow {
  int gpus = 0, nodes = 0;
  Timeline t;
  double efficiency = 0;  // tokens/s per device relative to 1 device
  double tokens_per_s = 0, tokens_per_s_per_gpu = 0, mfu = 0;
  Memory mem;
  bool fits = true;
  double global_batch_tokens = 0, batch_over_critical = 0;
  double mtbf_s = 0, ckpt_write_s = 0, restart_s = 0, ckpt_interval_s = 0, goodput = 0;
  double time_to_tokens_s = 0;  // the --tokens budget at this goodput
  double time_to_same_loss_s = 0;  // tokens needed for the loss that 1 device reaches with --tokens,
                                   // grown by 1 + B/B_crit (McCandlish et al. 2018), at this goodput
};
std::vector<SimRow> simulate(const SimConfig& c, const Hardware& hw, const std::vector<int>& gpus);

}  // namespace mc::sim
