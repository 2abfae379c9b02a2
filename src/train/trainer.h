// The training loop: data-parallel over a Communicator, on any Ops backend, with bucketed gradient
// reduction overlapped with backward, optional ZeRO-1, AdamW, clipping, validation, metrics and
// checkpoints. A step reads like its description (Trainer::step in trainer.cpp).
// Invariant: every rank constructs the Trainer with the same TrainConfig and data; all decisions that
// could differ between ranks (loss, norm, non-finite values, stopping) are all-reduced first.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdio>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/errors.h"
#include "data/data.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "model/gpt2.h"
#include "train/run_dir.h"

namespace mc {

// An error every rank detects at the same point (e.g. a configuration mismatch between ranks):
// reported by rank 0 only, and every rank exits with code 2 without aborting the job.
struct AgreedError : UsageError {
  explicit AgreedError(const std::string& m) : UsageError(m) {}
};

// Set by SIGTERM/SIGINT/SIGUSR1/SIGUSR2/SIGHUP/SIGXCPU (install_stop_handlers); the loop agrees on it across ranks every step.
// install_stop_handlers also ignores SIGPIPE and SIGXFSZ (writes then fail with an error instead).
void install_stop_handlers();
bool stop_requested();

struct StepMetrics {
  int step = 0;  // optimizer steps completed
  double loss = 0, lr = 0, grad_norm = 0, ms = 0, tokens_per_s = 0, mfu = 0, comm_ms = 0;
  // The step's phases (Note [Step phases] in trainer.cpp): data_ms + fwd_bwd_ms + comm_ms + opt_ms == ms
  // up to clock reads. comm_ms is the exposed communication (GradSync::finish()).
  double data_ms = 0, fwd_bwd_ms = 0, opt_ms = 0;
  double val_loss = NAN;
  // Wall seconds since this process's run() began, and the estimated seconds left (Note [ETA]).
  double elapsed_s = 0, eta_s = 0;
};

// A duration for humans: "42s", "3m20s", "2h05m", "3d04h" (rounded to what is shown); "?" if not finite
// or absurdly large.
std::string format_duration(double seconds);

struct TrainResult {
  std::vector<StepMetrics> steps;  // the steps this run executed (not those before a resume)
  int start_step = 0, final_step = 0;
  bool stopped_early = false;  // by a signal or --stop-at
  std::string last_checkpoint;
};

// What can be resolved without a communicator: data, model shape, sequence length. Validates the
// configuration (UsageError naming the flag). Deterministic: every rank computes the same plan.
struct RunPlan {
  TrainConfig cfg;
  DataDir data;
  ModelConfig model;
  int T = 0;
  std::vector<float> init_params;  // from --init-from (empty: GPT-2 init)
};
RunPlan plan_run(const TrainConfig& cfg);

// Bytes one rank needs, part by part: the compute copy of the parameters, the gradients, the optimizer
// state (AdamW m and v, and the fp32 master when the compute copy is not fp32), the activations of a
// B x T micro-batch, host copies for checkpoints when training on the host, and 64 MiB of scratch and
// runtime. zero 0 and 1 are what the trainer allocates (its ZeRO-1 shards m and v and keeps the whole
// master, which it all-gathers); 2 and 3 follow the ZeRO paper (gradients, then parameters, sharded
// with the master), for `simulate`. Exact for the model's buffers (GPT2::memory_bytes).
struct MemoryEstimate {
  double params = 0, grads = 0, optimizer = 0, activations = 0, staging = 0, total = 0;
};
MemoryEstimate estimate_memory(const ModelConfig& m, int B, int T, DType act_dtype, bool on_device, int zero,
                               int world_size, int grad_bytes = 4);
// The check of estimate_memory against what is available: UsageError (exit 2) naming --batch and the
// estimate when this plan cannot fit. Not collective.
void check_memory(const RunPlan& plan, Ops& ops, int world_size, int local_size);

class Trainer {
 public:
  Trainer(const RunPlan& plan, Communicator& comm, Ops& ops);
  ~Trainer();
  TrainResult run();  // reports progress to the watchdog (Note [Watchdog] in dist/watchdog.h)
  GPT2& model() { return *model_; }
  int step() const { return step_; }
  // Full fp32 master parameters on the host (collective under ZeRO: every rank must call).
  std::vector<float> master_params();
  // Validation loss over the first --val-seqs sequences (collective).
  double validate();
  // Writes a checkpoint of the current state (collective: all ranks call; rank 0 writes). required: a
  // failure ends every rank (AgreedExit 1); otherwise it is a warning and "" is returned
  // (Note [Checkpoint failures]).
  std::string save(bool required = true);

 private:
  StepMetrics train_step();
  void setup_local(const RunPlan& plan);
  bool try_resume();
  void open_metrics(bool resumed);
  void check_replicas();
  void check_ranks_agree();
  void log_step(const StepMetrics& m);
  float lr_at(int step) const;
  void print_config();

  TrainConfig cfg_;
  DataDir data_;
  ModelConfig mcfg_;
  int T_ = 0, B_ = 0, A_ = 1, R_ = 1, rank_ = 0;
  Communicator& comm_;
  Ops& ops_;
  std::unique_ptr<GPT2> model_;
  std::unique_ptr<Dataset> train_set_, val_set_;
  std::unique_ptr<Loader> loader_;
  std::unique_ptr<GradSync> sync_;
  Buffer master_own_, m_, v_;  // master_own_ only when the compute copy is not fp32
  float* master_ = nullptr;
  size_t n_ = 0, shard_begin_ = 0, shard_end_ = 0;
  std::vector<int> inputs_, targets_;
  int step_ = 0;             // optimizer steps completed
  std::string resumed_from_;  // the checkpoint --resume loaded ("" when starting from step 0)
  uint64_t loader_pos_ = 0;  // global sequences consumed
  int adam_t_ = 0;           // AdamW updates applied (skipped non-finite steps do not count)
  FILE* metrics_ = nullptr;
  bool metrics_failed_ = false;  // a write to --metrics failed (warned once; training goes on)
  bool metrics_gone_ = false;    // --metrics was deleted and could not be recreated (warned once)
  void reopen_metrics_if_deleted(int step);
  double checkpoint_io_allowance_s() const;
  RunDirLock ckpt_lock_;         // rank 0: the claim on --ckpt-dir (Note [Checkpoint directory])
  double peak_flops_ = 0, flops_per_token_ = 0;
  // Note [ETA]: wall seconds since run() began at which this process's first and second steps were ready
  // to log (index 1, 2; index 0 is the start), and how many steps this process has run.
  double eta_marks_[3] = {0, 0, 0};
  int steps_run_ = 0;
  void estimate_time_left(StepMetrics& m, double elapsed_s);
};

}  // namespace mc
