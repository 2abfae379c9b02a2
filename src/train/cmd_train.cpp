// The train subcommand: flags, validation agreed across ranks, devices and communicator, the Trainer.
// Invariant: an error on any rank ends every rank (exit 2 for bad input, printed once; exit 1 otherwise)
// and no rank enters a collective its peers will never reach.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/errors.h"
#include "dist/agree.h"
#include "dist/comm.h"
#include "dist/watchdog.h"
#include "ops/ops.h"
#include "train/commands.h"
#include "train/trainer.h"
#include "mc_git_rev.h"  // generated: cmake/git_rev.cmake

namespace mc {

int cmd_train(int argc, char** argv) {
  // First: a stop signal that arrives during start-up (flags, data, model, --resume) must be a graceful stop
  // too (Trainer::run stops before its first step), not the default action. Also ignores SIGPIPE: losing
  // stdout must not lose the run.
  install_stop_handlers();
  TrainConfig c;
  CLI::App app("Train a GPT-2 model (data-parallel under mpirun/srun).", "train");
  app.add_option("--data", c.data_dir, "directory of *train*.bin / *val*.bin token shards (default: built-in KJV corpus)");
  app.add_option("--tokenizer", c.tokenizer,
                 "byte | gpt2: without --data, the built-in corpus tokenized so (default byte); with --data, must "
                 "match the data's tokenizer.json");
  app.add_option("--model", c.model, "preset: tiny | d6 | d12 (GPT-2 124M) | d24 | d36 | d48")->capture_default_str();
  app.add_option("--init-from", c.init_from, "start from an llm.c model file (magic 20240326; fp32 version 3 or bf16 version 5)");
  app.add_option("--batch", c.batch, "sequences per rank per micro-step")->capture_default_str();
  app.add_option("--seq", c.seq, "tokens per sequence (default: the model's context)");
  app.add_option("--grad-accum", c.grad_accum, "micro-steps per optimizer step")->capture_default_str();
  app.add_option("--steps", c.steps, "total optimizer steps of the run (a resumed run continues to it)")->capture_default_str();
  app.add_option("--lr", c.lr, "peak learning rate")->capture_default_str();
  app.add_option("--warmup", c.warmup, "linear warmup steps (default: steps/20, at most 700)");
  app.add_option("--min-lr-frac", c.min_lr_frac, "cosine decay ends at lr * this")->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay (2-D weights only)")->capture_default_str();
  app.add_option("--beta1", c.beta1, "AdamW first-moment decay, in [0, 1)")->capture_default_str();
  app.add_option("--beta2", c.beta2, "AdamW second-moment decay, in [0, 1) (llm.c's train_gpt2.c uses 0.999)")
      ->capture_default_str();
  app.add_option("--eps", c.eps, "AdamW epsilon added to the denominator (> 0)")->capture_default_str();
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
                 "end the job when this rank sees no progress (start-up, a step, validation, a checkpoint, shutdown) for "
                 "max(this, 10 x the slowest step) seconds: a peer is hung or stopped (0: off)")
      ->capture_default_str();
  app.add_option("--check-every", c.check_every,
                 "compare a checksum of the parameters across ranks every N steps; stop if a replica differs (0: off)")
      ->capture_default_str();
  app.add_option("--peak-tflops", c.peak_tflops, "peak FLOP/s per rank for MFU (default 989 on cuda, 0.19 on cpu)");
  app.add_option("--ckpt-dir", c.ckpt_dir, "checkpoint directory")->capture_default_str();
  app.add_option("--ckpt-every", c.ckpt_every, "also checkpoint every N steps (0: at the end and on SIGTERM/SIGINT)")->capture_default_str();
  app.add_option("--ckpt-keep", c.ckpt_keep, "keep the newest N checkpoints (0: all)")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue from the newest valid checkpoint in --ckpt-dir");
  app.add_option("--stop-at", c.stop_at, "stop after this step with a checkpoint, as SIGTERM would");
  long long seed = static_cast<long long>(c.seed);
  app.add_option("--seed", seed, "seed of initialisation and data order (>= 0)")->capture_default_str();
  app.add_option("--metrics", c.metrics, "write one JSON object per step to this file (JSONL)");
  app.add_option("--val-every", c.val_every, "validation loss every N steps (0: only at the end)")->capture_default_str();
  app.add_option("--val-seqs", c.val_seqs, "validation sequences")->capture_default_str();
  app.add_option("--log-every", c.log_every, "print a line every N steps")->capture_default_str();
  // Parse errors are agreed like every other start-up error (below): under MPMD launches or per-host
  // wrappers one rank's flags can be bad while its peers' are fine.
  std::exception_ptr parse_err;
  if (parse_flags(app, argc, argv, &parse_err) == 0) return 0;
  c.overlap = !no_overlap;
  if (!parse_err && seed < 0)  // CLI11 would wrap -1 into a huge unsigned seed
    parse_err = std::make_exception_ptr(UsageError(strfmt("--seed %lld: must be >= 0", seed)));
  c.seed = uint64_t(seed);

  // Every phase below that can fail on one rank alone ends in an agreement (Note [Agreed failure]) over
  // the job as launched, and the watchdog (Note [Watchdog]) covers every phase in which a rank waits
  // for its peers.
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Ops> ops;
  RunPlan plan;
  try {
    std::unique_ptr<Communicator> world = make_world_communicator();
    if (world->size() > 1 && c.watchdog_s > 0) watchdog_start(c.watchdog_s, "start-up");
    else watchdog_stop();  // nothing to wait for, or turned off
    agree_on_failure(*world, parse_err);
    run_agreed(*world, [&] {
      resolve_device(c.device);
      plan = plan_run(c);
    });
    // Ranks that passed on their own must also run the same thing before any --comm-specific collective.
    if (!all_ranks_equal(*world, std::string(MC_GIT_REV) + "|" + app.config_to_str(true, false)))
      throw AgreedError("ranks were started with different flags or binaries: every rank must run the same "
                        "minicolossus with the same flags");
    // The ops first: a GPU is picked by the rank's place on its node, which the world communicator knows
    // (it is the job as launched, as every --comm is). Then the communicator for training, built once
    // for those ops: --comm is the same everywhere now, so its collectives match, and make_communicator
    // checks what the backend needs (NCCL: a GPU per rank) on every rank alike.
    const int local_rank = world->local_rank(), local_size = world->local_size();
    run_agreed(*world, [&] {
      ops = c.device == "cuda" ? make_ops("cuda", local_rank) : make_ops("cpu", 0);
      check_memory(plan, *ops, world->size(), local_size);
    });
    comm = make_communicator(c.comm, ops.get());
  } catch (const AgreedExit& e) {
    return e.code;
  } catch (const UsageError& e) {  // the same on every rank
    if (this_rank() == 0) report_error(e);
    return 2;
  }
  // Training. An error on one rank must not leave the others waiting in a collective.
  try {
    Trainer trainer(plan, *comm, *ops);
    trainer.run();
  } catch (const AgreedExit& e) {
    return e.code;
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
