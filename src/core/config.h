// Every training default in one commented struct; the CLI (src/train/commands.cpp) binds flags to
// these fields, validates them, and rank 0 prints the resolved values at start.
// Invariant: two ranks with equal TrainConfig (plus build and data) train the same run; the config
// hash that ranks compare at start covers every field here.
#pragma once
#include <cstdint>
#include <string>

namespace mc {

struct TrainConfig {
  // data and model
  std::string data_dir;          // --data: a directory of *train*.bin / *val*.bin; empty = built-in corpus
  std::string tokenizer;         // --tokenizer: byte | gpt2. Without --data: the built-in corpus tokenized so
                                 // ("" = byte); with --data: must be the data's (checked). Resolved by
                                 // plan_run to the data's tokenizer.
  std::string model = "tiny";    // --model: tiny | d6 | d12 | d24 | d36 | d48
  std::string init_from;         // --init-from: an llm.c model file (magic 20240326) to start from
  // batch: the global batch of a step is world_size * batch * grad_accum sequences of seq tokens
  int batch = 8;                 // --batch: sequences per rank per micro-step (B)
  int seq = 0;                   // --seq: tokens per sequence (T); 0 = the model's context
  int grad_accum = 1;            // --grad-accum: micro-steps per optimizer step (K)
  int steps = 200;               // --steps: total optimizer steps of the run (a resumed run continues to it)
  // optimizer: AdamW, decoupled weight decay on 2-D weights only, global-norm clipping
  float lr = 1e-3f;              // --lr: peak learning rate
  int warmup = -1;               // --warmup: linear warmup steps; -1 = steps / 20 (at most 700)
  float min_lr_frac = 0.1f;      // --min-lr-frac: cosine decays to lr * this at the last step
  float weight_decay = 0.1f;     // --weight-decay
  float beta1 = 0.9f;            // --beta1: AdamW first-moment decay
  float beta2 = 0.95f;           // --beta2: second-moment decay (GPT-3's 0.95; llm.c's train_gpt2.c uses 0.999)
  float eps = 1e-8f;             // --eps: AdamW denominator epsilon
  float grad_clip = 1.0f;        // --grad-clip: global-norm clip; 0 = off
  // hardware and distribution
  std::string device = "cpu";    // --device: cpu | cuda
  std::string comm = "auto";     // --comm: auto | single | mpi | nccl
  int zero = 0;                  // --zero: 0 = plain data parallelism, 1 = ZeRO-1 sharded optimizer state
  double bucket_mb = 25.0;       // --bucket-mb: gradient bucket size (Note [Bucket overlap]); 25 measured
                                 // best of 1/4/8/25 for d6 on 2 CPU ranks (scripts/bench_dp.sh)
  bool overlap = true;           // --no-overlap turns off reducing buckets during backward (for measuring)
  double watchdog_s = 300;       // --watchdog-s: abort the job when no step completes for
                                 // max(this, 10 x the slowest step or save so far); 0 = off (Note [Watchdog])
  int check_every = 100;         // --check-every: compare a checksum of the parameters across ranks every N
                                 // steps (Note [Replica check]); 0 = off
  double peak_tflops = 0;        // --peak-tflops: for MFU; 0 = 989 on cuda (H100 bf16), 0.19 on cpu
  // checkpoints
  std::string ckpt_dir = "checkpoints";  // --ckpt-dir
  int ckpt_every = 0;            // --ckpt-every: also save every N steps (0: only at the end / on signal)
  int ckpt_keep = 3;             // --ckpt-keep: keep the newest N checkpoints
  bool resume = false;           // --resume: continue from the newest valid checkpoint in ckpt_dir
  int stop_at = 0;               // --stop-at: stop (with a checkpoint) after this step, as if signalled
  // bookkeeping
  uint64_t seed = 1337;          // --seed: initialisation and data order
  std::string metrics;           // --metrics: one JSON object per step (JSONL)
  int val_every = 50;            // --val-every: validation loss every N steps (0 = only at the end)
  int val_seqs = 64;             // --val-seqs: validation sequences (the first ones, in order)
  int log_every = 1;             // --log-every: stdout line every N steps
  bool quiet = false;            // no stdout (tests)
};

}  // namespace mc
