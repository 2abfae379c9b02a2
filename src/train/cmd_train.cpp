// The train subcommand: flags, validation agreed across ranks, devices and communicator, the Trainer.
// Invariant: an error on any rank ends every rank (exit 2 for bad input, printed once; exit 1 otherwise)
// and no rank enters a collective its peers will never reach.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/errors.h"
#include "dist/comm.h"
#include "ops/ops.h"
#include "train/commands.h"
#include "train/trainer.h"

namespace mc {

// ---- train -----------------------------------------------------------------------------------

int cmd_train(int argc, char** argv) {
  TrainConfig c;
  CLI::App app("Train a GPT-2 model (data-parallel under mpirun/srun).", "train");
  app.add_option("--data", c.data_dir, "directory of *train*.bin / *val*.bin token shards (default: built-in KJV corpus)");
  app.add_option("--model", c.model, "preset: tiny | d6 | d12 (GPT-2 124M) | d24 | d36 | d48")->capture_default_str();
  app.add_option("--init-from", c.init_from, "start from an llm.c model file (magic 20240326, fp32)");
  app.add_option("--batch", c.batch, "sequences per rank per micro-step")->capture_default_str();
  app.add_option("--seq", c.seq, "tokens per sequence (default: the model's context)");
  app.add_option("--grad-accum", c.grad_accum, "micro-steps per optimizer step")->capture_default_str();
  app.add_option("--steps", c.steps, "total optimizer steps of the run (a resumed run continues to it)")->capture_default_str();
  app.add_option("--lr", c.lr, "peak learning rate")->capture_default_str();
  app.add_option("--warmup", c.warmup, "linear warmup steps (default: steps/20, at most 700)");
  app.add_option("--min-lr-frac", c.min_lr_frac, "cosine decay ends at lr * this")->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay (2-D weights only)")->capture_default_str();
  app.add_option("--grad-clip", c.grad_clip, "clip the global gradient norm to this (0: off)")->capture_default_str();
  app.add_option("--device", c.device, "cpu | cuda (cuBLASLt is found at run time; MC_CUBLASLT_LIB=FILE|DIR overrides)")
      ->capture_default_str();
  app.add_option("--comm", c.comm, "auto | single | mpi | nccl (NCCL is found at run time; MC_NCCL_LIB=FILE|DIR overrides)")
      ->capture_default_str();
  app.add_option("--zero", c.zero, "0: plain data parallelism; 1: ZeRO-1 (sharded optimizer state)")->capture_default_str();
  app.add_option("--bucket-mb", c.bucket_mb, "gradient bucket size in MiB")->capture_default_str();
  bool no_overlap = false;
  app.add_flag("--no-overlap", no_overlap, "reduce gradients only after backward (for measuring the overlap)");
  app.add_option("--watchdog-s", c.watchdog_s,
                 "abort the job when no step completes for max(this, 10 x the slowest step) seconds (0: off)")
      ->capture_default_str();
  app.add_option("--peak-tflops", c.peak_tflops, "peak FLOP/s per rank for MFU (default 989 on cuda, 0.19 on cpu)");
  app.add_option("--ckpt-dir", c.ckpt_dir, "checkpoint directory")->capture_default_str();
  app.add_option("--ckpt-every", c.ckpt_every, "also checkpoint every N steps (0: at the end and on SIGTERM/SIGINT)")->capture_default_str();
  app.add_option("--ckpt-keep", c.ckpt_keep, "keep the newest N checkpoints (0: all)")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue from the newest valid checkpoint in --ckpt-dir");
  app.add_option("--stop-at", c.stop_at, "stop after this step with a checkpoint, as SIGTERM would");
  app.add_option("--seed", c.seed, "seed of initialisation and data order")->capture_default_str();
  app.add_option("--metrics", c.metrics, "write one JSON object per step to this file (JSONL)");
  app.add_option("--val-every", c.val_every, "validation loss every N steps (0: only at the end)")->capture_default_str();
  app.add_option("--val-seqs", c.val_seqs, "validation sequences")->capture_default_str();
  app.add_option("--log-every", c.log_every, "print a line every N steps")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  c.overlap = !no_overlap;

  // Phase 1, before any communication: validation errors are the same on every rank.
  RunPlan plan;
  std::unique_ptr<Ops> ops;
  try {
    resolve_device(c.device);
    plan = plan_run(c);
  } catch (const UsageError& e) {
    if (this_rank() == 0) report_error(e);
    return 2;
  }
  // Phase 2: devices and communicator. Environment errors (no GPU) are also the same everywhere.
  std::unique_ptr<Communicator> comm;
  try {
    comm = make_communicator(c.comm, nullptr);  // host communicator first, to learn the local rank
    if (c.device == "cuda") {
      const int local_rank = comm->local_rank();
      comm.reset();
      ops = make_ops("cuda", local_rank);
      comm = make_communicator(c.comm, ops.get());
    } else {
      ops = make_ops("cpu", 0);
    }
  } catch (const UsageError& e) {
    if (this_rank() == 0) report_error(e);
    return 2;
  }
  // Phase 3: training. An error on one rank must not leave the others waiting in a collective.
  install_stop_handlers();
  try {
    Trainer trainer(plan, *comm, *ops);
    trainer.run();
  } catch (const AgreedError& e) {
    if (comm->rank() == 0) report_error(e);
    return 2;
  } catch (const std::exception& e) {
    report_error(e);
    const int code = dynamic_cast<const UsageError*>(&e) ? 2 : 1;
    if (comm->size() > 1) comm->abort(code);
    return code;
  }
  return 0;
}

}  // namespace mc
