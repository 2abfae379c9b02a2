// The training loop (see trainer.h).
#include "train/trainer.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>

#include <sys/stat.h>
#include <unistd.h>

#include <omp.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "core/dynlib.h"
#include "dist/agree.h"
#include "dist/watchdog.h"
#include "core/errors.h"
#include "core/json.h"
#include "core/start_signals.h"
#include "core/files.h"
#include "model/llmc_io.h"
#include "train/checkpoint.h"
#include "mc_git_rev.h"  // generated: cmake/git_rev.cmake

namespace mc {

// ---- stop requests ---------------------------------------------------------------------------

namespace {
std::atomic<int> g_stop{0};
extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(1) != 0) {  // a second signal: give up at once, saying so (write(2) is signal-safe)
    static const char msg[] =
        "minicolossus: a second stop signal: exiting now without a checkpoint; the checkpoints already written are "
        "intact (--resume continues from the newest)\n";
    const ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
// SIGXCPU (the soft CPU-time limit): a warning that the kernel repeats every second until the hard limit
// kills the process, so it requests the stop without the second-signal escalation above.
extern "C" void on_cpu_limit_signal(int) { g_stop.store(1); }
using clock_t_ = std::chrono::steady_clock;
double seconds_since(clock_t_::time_point t0) {
  return std::chrono::duration<double>(clock_t_::now() - t0).count();
}
nlohmann::json config_json(const TrainConfig& c) {
  return {{"data", c.data_dir},   {"tokenizer", c.tokenizer},
          {"model", c.init_from.empty() ? c.model : std::string()}, {"init_from", c.init_from},
          {"batch", c.batch},     {"seq", c.seq},               {"grad_accum", c.grad_accum},
          {"steps", c.steps},     {"lr", c.lr},                 {"warmup", c.warmup},
          {"min_lr_frac", c.min_lr_frac}, {"weight_decay", c.weight_decay}, {"beta1", c.beta1},
          {"beta2", c.beta2},     {"eps", c.eps},               {"grad_clip", c.grad_clip},
          {"device", c.device},   {"comm", c.comm},             {"zero", c.zero},
          {"bucket_mb", c.bucket_mb}, {"overlap", c.overlap},   {"watchdog_s", c.watchdog_s}, {"check_every", c.check_every},   {"ckpt_dir", c.ckpt_dir},
          {"ckpt_every", c.ckpt_every}, {"resume", c.resume},   {"seed", c.seed},
          {"metrics", c.metrics}, {"val_every", c.val_every},   {"val_seqs", c.val_seqs}};
}
}  // namespace

// SIGUSR1 and SIGUSR2 too: Open MPI's mpirun (4.1) kills its ranks about a second after forwarding SIGTERM,
// but forwards SIGUSR1 and waits, so `kill -USR1 <mpirun>` is the graceful stop under mpirun.
// SIGPIPE is ignored: a reader of stdout that goes away (`train | head -3`) must not kill the run;
// writes to the closed pipe then just fail.
// SIGHUP (the terminal or ssh session went away) stops gracefully too, unless it is ignored already:
// `nohup` asked for the run to survive the hang-up, and a handler would undo that.
// SIGXFSZ is ignored as well: a file size limit (ulimit -f) would otherwise kill the run in the middle of a
// checkpoint, without a word; ignored, the write fails with EFBIG and Note [Checkpoint failures] applies.
void install_stop_handlers() {
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGUSR2, on_stop_signal);  // batch systems' "you will be killed soon" (SGE -notify, LSF)
  std::signal(SIGXCPU, on_cpu_limit_signal);
  // Ignored when the process started: ignored again (a library may have taken it since: Note [Ignored at
  // start] in core/start_signals.cpp).
  std::signal(SIGHUP, hup_ignored_at_start() ? SIG_IGN : on_stop_signal);
}
bool stop_requested() { return g_stop.load() != 0; }

// ---- planning (no communication) -------------------------------------------------------------

RunPlan plan_run(const TrainConfig& cfg_in) {
  RunPlan p;
  p.cfg = cfg_in;
  TrainConfig& c = p.cfg;
  MC_REQUIRE(c.batch > 0, "--batch %d: must be positive", c.batch);
  MC_REQUIRE(c.seq >= 0, "--seq %d: must be positive (or 0 for the model's context)", c.seq);
  MC_REQUIRE(c.grad_accum > 0, "--grad-accum %d: must be positive", c.grad_accum);
  MC_REQUIRE(c.steps > 0, "--steps %d: must be positive", c.steps);
  MC_REQUIRE(c.lr > 0 && std::isfinite(c.lr), "--lr %g: must be a positive number", double(c.lr));
  MC_REQUIRE(c.weight_decay >= 0 && std::isfinite(c.weight_decay), "--weight-decay %g: must be a number >= 0",
             double(c.weight_decay));
  // beta = 1 would freeze a moment at zero (and divide by zero in the bias correction); the negated
  // form also refuses NaN.
  MC_REQUIRE(c.beta1 >= 0 && c.beta1 < 1, "--beta1 %g: must be in [0, 1)", double(c.beta1));
  MC_REQUIRE(c.beta2 >= 0 && c.beta2 < 1, "--beta2 %g: must be in [0, 1)", double(c.beta2));
  MC_REQUIRE(c.eps > 0 && std::isfinite(c.eps), "--eps %g: must be a positive number", double(c.eps));
  MC_REQUIRE(c.tokenizer.empty() || c.tokenizer == "byte" || c.tokenizer == "gpt2",
             "--tokenizer %s: must be byte or gpt2", c.tokenizer.c_str());
  MC_REQUIRE(c.grad_clip >= 0 && std::isfinite(c.grad_clip), "--grad-clip %g: must be a number >= 0 (0: off)",
             double(c.grad_clip));
  MC_REQUIRE(c.min_lr_frac >= 0 && c.min_lr_frac <= 1, "--min-lr-frac %g: must be in [0, 1]", double(c.min_lr_frac));
  MC_REQUIRE(c.zero == 0 || c.zero == 1, "--zero %d: must be 0 or 1", c.zero);
  MC_REQUIRE(c.bucket_mb > 0 && c.bucket_mb <= 1e6, "--bucket-mb %g: must be a positive number of MiB (at most 1e6)",
             c.bucket_mb);
  MC_REQUIRE(c.ckpt_every >= 0, "--ckpt-every %d: must be >= 0", c.ckpt_every);
  MC_REQUIRE(c.val_every >= 0, "--val-every %d: must be >= 0", c.val_every);
  MC_REQUIRE(c.val_seqs >= 0, "--val-seqs %d: must be >= 0", c.val_seqs);
  MC_REQUIRE(c.log_every > 0, "--log-every %d: must be positive", c.log_every);
  MC_REQUIRE(c.stop_at >= 0, "--stop-at %d: must be >= 0", c.stop_at);
  MC_REQUIRE(c.watchdog_s >= 0 && std::isfinite(c.watchdog_s), "--watchdog-s %g: must be a number >= 0 (0 turns it off)",
             c.watchdog_s);
  MC_REQUIRE(c.check_every >= 0, "--check-every %d: must be >= 0 (0 turns it off)", c.check_every);
  MC_REQUIRE(c.peak_tflops >= 0 && std::isfinite(c.peak_tflops), "--peak-tflops %g: must be a number >= 0",
             c.peak_tflops);
  MC_REQUIRE(c.ckpt_keep >= 0, "--ckpt-keep %d: must be >= 0 (0 keeps all)", c.ckpt_keep);
  // -1 is the flag's "not given" (the default below); anything lower is a typo, not a request.
  MC_REQUIRE(c.warmup >= -1, "--warmup %d: must be >= 0 (or -1: the default, steps/20 capped at 700)", c.warmup);
  // Without a directory there is nothing to resume from: training from step 0 would silently redo the run.
  MC_REQUIRE(!c.resume || !c.ckpt_dir.empty(), "--resume: needs a --ckpt-dir to resume from (--ckpt-dir is empty)");
  if (c.warmup < 0) c.warmup = std::min(700, c.steps / 20);
  if (c.data_dir.empty()) c.data_dir = default_data_dir(c.tokenizer.empty() ? "byte" : c.tokenizer);
  p.data = open_data_dir(c.data_dir);
  // An explicit --tokenizer that contradicts --data is a mistake (training GPT-2 tokens as bytes, or the
  // reverse, would fail later or silently train the wrong thing), not something to ignore.
  MC_REQUIRE(c.tokenizer.empty() || c.tokenizer == p.data.tokenizer,
             "--tokenizer %s: --data %s holds %s tokens (vocabulary %d); drop --tokenizer or prepare the data "
             "with it",
             c.tokenizer.c_str(), c.data_dir.c_str(), p.data.tokenizer.c_str(), p.data.vocab_size);
  c.tokenizer = p.data.tokenizer;  // resolved: the printed config and checkpoints say what was trained on

  if (!c.init_from.empty()) {
    LlmcModel m = read_llmc_model(c.init_from);
    MC_REQUIRE(m.cfg.vocab_size == p.data.vocab_size,
               "--init-from %s: the model's vocabulary is %d but --data %s has vocabulary %d", c.init_from.c_str(),
               m.cfg.vocab_size, c.data_dir.c_str(), p.data.vocab_size);
    p.model = m.cfg;
    p.init_params = std::move(m.params);
  } else {
    p.model = model_preset(c.model, p.data.vocab_size);
  }
  p.T = c.seq == 0 ? p.model.max_seq_len : c.seq;
  const std::string source = c.init_from.empty() ? "--model " + c.model : "--init-from " + c.init_from;
  MC_REQUIRE(p.T <= p.model.max_seq_len, "--seq %d: longer than the model's context of %d tokens (%s)", p.T,
             p.model.max_seq_len, source.c_str());
  return p;
}

// ---- memory (before anything is allocated) ----------------------------------------------------

namespace {
// Bytes this process may still allocate on the host: MemAvailable, capped by a cgroup v2 memory.max.
double host_available_bytes() {
  double avail = 0;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kb = 0;
    while (std::fscanf(f, "%63s %llu kB\n", key, &kb) == 2)
      if (std::strcmp(key, "MemAvailable:") == 0) avail = double(kb) * 1024.0;
    std::fclose(f);
  }
  auto read_num = [](const char* path, double* out) {
    FILE* f = std::fopen(path, "r");
    if (!f) return false;
    unsigned long long v = 0;
    const bool ok = std::fscanf(f, "%llu", &v) == 1;  // "max" (no limit) does not parse
    std::fclose(f);
    if (ok) *out = double(v);
    return ok;
  };
  double limit = 0, used = 0;
  if (read_num("/sys/fs/cgroup/memory.max", &limit) && read_num("/sys/fs/cgroup/memory.current", &used) &&
      limit > used && (avail == 0 || limit - used < avail))
    avail = limit - used;
  return avail;
}
}  // namespace

MemoryEstimate estimate_memory(const ModelConfig& m, int B, int T, DType act, bool on_device, int zero, int world,
                               int grad_bytes) {
  const double n = double(make_layout(m).total);
  const double shard = world > 1 ? std::ceil(n / world) : n;  // the largest of even_split's shards
  const double master = act != DType::F32 ? 4.0 : 0.0;
  MemoryEstimate e;
  e.params = (zero >= 3 ? shard : n) * double(dtype_size(act));
  e.grads = (zero >= 2 ? shard : n) * grad_bytes;
  e.optimizer = (zero >= 1 ? shard : n) * 8.0 + (zero >= 2 ? shard : n) * master;
  e.activations = GPT2::activation_bytes(m, B, T, act);
  e.staging = on_device ? 0.0 : 12.0 * n;  // host copies while saving or resuming (params, m, v)
  e.total = e.params + e.grads + e.optimizer + e.activations + e.staging + 64.0 * 1024 * 1024;
  return e;
}

void check_memory(const RunPlan& p, Ops& ops, int world_size, int local_size) {
  const bool dev = ops.on_device();
  const MemoryEstimate est =
      estimate_memory(p.model, p.cfg.batch, p.T, ops.act_dtype(), dev, world_size > 1 ? p.cfg.zero : 0, world_size);
  const double need = est.total;
  double avail = 0;
  int sharing = 1;  // ranks of this node drawing on the same memory
  if (dev) {
    avail = double(ops.device_free_bytes());
    const int gpus = std::max(1, cuda_device_count());
    sharing = (std::max(1, local_size) + gpus - 1) / gpus;
  } else {
    avail = host_available_bytes();
    sharing = std::max(1, local_size);
  }
  if (avail <= 0 || need * sharing <= avail) return;
  const double gib = 1024.0 * 1024 * 1024;
  throw UsageError(strfmt(
      "--batch %d: this run needs about %.1f GiB of %s memory per rank (%.1f GiB of it activations for %d x %d "
      "tokens)%s, but only %.1f GiB is available; lower --batch or --seq (--grad-accum keeps the global batch)",
      p.cfg.batch, need / gib, dev ? "GPU" : "host", est.activations / gib, p.cfg.batch, p.T,
      sharing > 1 ? strfmt(", x %d ranks sharing it", sharing).c_str() : "", avail / gib));
}

// ---- the trainer -----------------------------------------------------------------------------

Trainer::Trainer(const RunPlan& plan, Communicator& comm, Ops& ops)
    : cfg_(plan.cfg), data_(plan.data), mcfg_(plan.model), T_(plan.T), comm_(comm), ops_(ops) {
  MC_CHECK(comm.device_buffers() == ops.on_device(), "communicator %s does not match ops %s", comm.name().c_str(),
           ops.name().c_str());
  B_ = cfg_.batch;
  A_ = cfg_.grad_accum;
  R_ = comm.size();
  rank_ = comm.rank();
  if (rank_ != 0) cfg_.quiet = true;
  // Note [Agreed failure] (dist/agree.h): each start-up phase that can fail on one rank alone ends
  // with an agreement, so no rank is left waiting in a collective.
  watchdog_phase("start-up (data, model, checkpoint directory)");
  run_agreed(comm_, [&] { setup_local(plan); });
  watchdog_phase("start-up (comparing ranks)");
  check_ranks_agree();
  watchdog_phase("start-up (resume)", checkpoint_io_allowance_s());
  const bool resumed = cfg_.resume && try_resume();
  run_agreed(comm_, [&] { open_metrics(resumed); });
  // Start-up has succeeded (an error above stays the only line on stderr): a fresh run among another run's
  // checkpoints is allowed (rerunning a command overwrites), but a later --resume takes the newest
  // checkpoint, whichever run wrote it, so say so.
  if (!cfg_.quiet && !cfg_.ckpt_dir.empty() && !cfg_.resume) {
    const auto old = list_checkpoints(cfg_.ckpt_dir);
    if (!old.empty())
      std::fprintf(stderr,
                   "warning: --ckpt-dir %s already holds %zu checkpoint%s (newest %s); this run starts from step 0 "
                   "(no --resume) and writes beside them: a later --resume continues from the newest, whichever run "
                   "wrote it\n",
                   cfg_.ckpt_dir.c_str(), old.size(), old.size() == 1 ? "" : "s", old.front().c_str());
  }
  print_config();
}

// Everything of start-up that involves no communication.
void Trainer::setup_local(const RunPlan& plan) {
  if (rank_ == 0 && !cfg_.ckpt_dir.empty()) ckpt_lock_ = RunDirLock::claim(cfg_.ckpt_dir, cfg_.quiet);
  train_set_ = std::make_unique<Dataset>(data_.train_files, data_.vocab_size, T_);
  if (!data_.val_files.empty()) {
    try {
      val_set_ = std::make_unique<Dataset>(data_.val_files, data_.vocab_size, T_);
    } catch (const DataTooShort& e) {  // a corrupt val shard is an error like a corrupt train shard
      if (rank_ == 0) std::fprintf(stderr, "warning: no validation: %s\n", e.what());
    }
  }
  loader_ = std::make_unique<Loader>(*train_set_, cfg_.seed);
  model_ = std::make_unique<GPT2>(mcfg_, ops_, B_, T_);
  n_ = model_->num_params();
  inputs_.resize(size_t(B_) * T_ * A_);
  targets_.resize(size_t(B_) * T_ * A_);

  sync_ = std::make_unique<GradSync>(comm_, model_->grads(), n_, bucket_elems_for_mb(cfg_.bucket_mb),
                                     cfg_.zero == 1 && R_ > 1);
  shard_begin_ = sync_->shard_begin();
  shard_end_ = sync_->shard_end();
  if (ops_.act_dtype() == DType::F32) {
    master_ = model_->params().f32();  // the compute copy is the master
  } else {
    master_own_ = Buffer(ops_, n_ * sizeof(float));
    master_ = master_own_.f32();
  }
  m_ = Buffer(ops_, (shard_end_ - shard_begin_) * sizeof(float));
  v_ = Buffer(ops_, (shard_end_ - shard_begin_) * sizeof(float));
  peak_flops_ = 1e12 * (cfg_.peak_tflops > 0 ? cfg_.peak_tflops : (ops_.on_device() ? 989.0 : 0.19));
  flops_per_token_ = flops_per_token(mcfg_, T_);  // once: it builds the parameter layout

  const std::vector<float> init = plan.init_params.empty() ? gpt2_init(mcfg_, model_->layout(), cfg_.seed) : plan.init_params;
  model_->set_params(init);
  if (master_own_.get()) ops_.upload(master_, init.data(), n_ * sizeof(float));
}

// --metrics is truncated (or appended to): a typo that names a file the run reads or keeps (a shard, a
// checkpoint, the lock, the --init-from model) would destroy it, the checkpoint just resumed from
// included. Compared by inode, so another spelling of the same path is caught too.
void Trainer::open_metrics(bool resumed) {
  if (rank_ != 0 || cfg_.metrics.empty()) return;
  struct stat ms {};
  if (::stat(cfg_.metrics.c_str(), &ms) == 0 && S_ISREG(ms.st_mode)) {
    std::vector<std::string> ours = data_.train_files;
    ours.insert(ours.end(), data_.val_files.begin(), data_.val_files.end());
    ours.push_back(data_.dir + "/tokenizer.json");
    if (!cfg_.init_from.empty()) ours.push_back(cfg_.init_from);
    if (!cfg_.ckpt_dir.empty()) {
      for (const auto& ck : list_checkpoints(cfg_.ckpt_dir)) ours.push_back(ck);
      ours.push_back(cfg_.ckpt_dir + "/.minicolossus.lock");
    }
    for (const auto& f : ours) {
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0 && st.st_dev == ms.st_dev && st.st_ino == ms.st_ino)
        throw UsageError(strfmt("--metrics %s: is %s, which this run reads or keeps; name a file of its own",
                                cfg_.metrics.c_str(), f.c_str()));
    }
  }
  // A checkpoint not written yet counts too: a --metrics named ckpt_* in --ckpt-dir (a checkpoint's or a
  // temporary's name) is replaced by a checkpoint's rename, and reopen_metrics_if_deleted would then append
  // the metrics to that checkpoint, corrupting it.
  if (!cfg_.ckpt_dir.empty()) {
    const std::string dir = parent_of(cfg_.metrics);
    const std::string name = cfg_.metrics.substr(cfg_.metrics.find_last_of('/') + 1);  // npos + 1 == 0
    struct stat ds {}, cs {};
    if (name.rfind("ckpt_", 0) == 0 && ::stat(dir.c_str(), &ds) == 0 && ::stat(cfg_.ckpt_dir.c_str(), &cs) == 0 &&
        ds.st_dev == cs.st_dev && ds.st_ino == cs.st_ino)
      throw UsageError(strfmt("--metrics %s: a ckpt_* name in --ckpt-dir %s, where checkpoints are written and "
                              "replaced; name a file of its own", cfg_.metrics.c_str(), cfg_.ckpt_dir.c_str()));
  }
  metrics_ = open_output_file(cfg_.metrics, "--metrics", resumed);
}

Trainer::~Trainer() {
  if (metrics_) std::fclose(metrics_);
}

// At start every rank hashes what must be identical and the hashes are compared: a rank with a
// different build, flags or data would otherwise train silently wrong (or deadlock later). The data
// enters by content (data_fingerprint: computed while the shards were validated), not by path and
// size, so a host whose copy of a shard differs is caught too.
void Trainer::check_ranks_agree() {
  std::string s;
  run_agreed(comm_, [&] {
    s = std::string(MC_GIT_REV) + "|" + json_text(config_json(cfg_)) + "|" + json_text(model_json(mcfg_)) +
        strfmt("|data %016llx", (unsigned long long)data_fingerprint(data_));
  });
  if (!all_ranks_equal(comm_, s))
    throw AgreedError(
        "ranks disagree on the build, flags or data (the hash of the binary's version, the flags and the content of "
        "every shard differs): every rank must run the same minicolossus binary with the same flags and identical "
        "--data");
}

void Trainer::print_config() {
  if (cfg_.quiet) return;
  const double G = double(R_) * B_ * A_;
  std::printf("minicolossus %s | ops %s | comm %s, %d rank%s | zero %d\n", MC_GIT_REV, ops_.name().c_str(),
              comm_.name().c_str(), R_, R_ == 1 ? "" : "s", cfg_.zero);
  // The run-time libraries actually loaded (Note [Run-time libraries]): which NCCL and cuBLASLt a job used.
  for (const RuntimeLibrary* lib : {&cublaslt_library(), &nccl_library()}) {
    const std::string path = runtime_library_path(*lib);
    if (!path.empty()) std::printf("%s: %s\n", lib->name.c_str(), path.c_str());
  }
  std::printf("model %s: L%d C%d NH%d context %d vocab %d (padded %d), %.2fM parameters\n",
              cfg_.init_from.empty() ? cfg_.model.c_str() : cfg_.init_from.c_str(), mcfg_.num_layers, mcfg_.channels,
              mcfg_.num_heads, mcfg_.max_seq_len, mcfg_.vocab_size, mcfg_.padded_vocab_size, double(n_) / 1e6);
  std::printf("data %s (%s tokenizer): %zu train sequences of %d tokens, %zu val sequences\n", data_.dir.c_str(),
              data_.tokenizer.c_str(), train_set_->num_sequences(), T_, val_set_ ? val_set_->num_sequences() : 0);
  std::printf("batch %d x accum %d x ranks %d = %.0f sequences = %.0f tokens per step; steps %d (from %d)\n", B_, A_,
              R_, G, G * T_, cfg_.steps, step_);
  std::printf("config %s\n", json_text(config_json(cfg_)).c_str());
  std::fflush(stdout);
}

float Trainer::lr_at(int step) const {
  const float lr = cfg_.lr, min_lr = cfg_.lr * cfg_.min_lr_frac;
  if (step < cfg_.warmup) return lr * float(step + 1) / float(cfg_.warmup);
  const int decay_steps = cfg_.steps - cfg_.warmup;
  if (decay_steps <= 1) return lr;
  const float progress = float(step - cfg_.warmup) / float(decay_steps - 1);
  return min_lr + 0.5f * (lr - min_lr) * (1.0f + std::cos(3.14159265358979f * progress));
}

// Note [Step phases]
// Each step's metrics line splits its wall time ms into four contiguous phases, so that `simulate` can
// calibrate its compute model from them and data_ms + fwd_bwd_ms + comm_exposed_ms + opt_ms == ms up
// to the cost of reading the clock:
//   data_ms     filling every micro-step's batch, and the agreement on data errors;
//   fwd_bwd_ms  zeroing gradients, forward and backward of all micro-steps, up to GradSync::finish():
//               with overlap it includes what the concurrent bucket reductions cost the compute. On a
//               device the stream is synchronized first, so this is executed work, not queued work;
//   comm_ms     GradSync::finish(): the communication still running when backward ended (exposed);
//   opt_ms      the rest: loss and norm all-reduces, clipping, AdamW, ZeRO-1 all-gather, synchronize.

// One optimizer step:
//   next_batch -> forward -> backward (buckets reduce as they become ready) -> finish reduction
//   -> clip -> optimizer step (own shard under ZeRO, then all-gather) -> log
StepMetrics Trainer::train_step() {
  const auto t0 = clock_t_::now();
  StepMetrics mt;
  // The step's data first, for all micro-steps: a shard that changed under us (DataChanged) or any other
  // read failure is agreed on before any collective of the step (Note [Agreed failure]); then every rank
  // saves the state of the previous step and the job ends naming the file.
  const size_t BT = size_t(B_) * T_;
  std::exception_ptr data_err;
  try {
    for (int micro = 0; micro < A_; ++micro) {
      // Note [Global batch order]: step s covers global positions [s*G, (s+1)*G); micro-step m of rank r
      // takes the B sequences at offset (m*R + r)*B. Any split of G = R*A*B sees the same sequences.
      const uint64_t pos = loader_pos_ + (uint64_t(micro) * R_ + rank_) * B_;
      loader_->fill(pos, B_, inputs_.data() + micro * BT, targets_.data() + micro * BT);
    }
  } catch (...) {
    data_err = std::current_exception();
  }
  try {
    agree_on_failure(comm_, data_err);
  } catch (const AgreedExit&) {
    const std::string path = save(false);
    if (!cfg_.quiet && !path.empty())
      std::printf("saved checkpoint %s (step %d) before stopping on a data error; fix the data, then --resume\n",
                  path.c_str(), step_);
    throw;
  }
  const auto t_data = clock_t_::now();
  model_->zero_grads();
  double loss_sum = 0;
  for (int micro = 0; micro < A_; ++micro) {
    loss_sum += model_->forward(inputs_.data() + micro * BT, targets_.data() + micro * BT, B_, T_, 1.0f / float(A_));
    const bool reduce_now = micro == A_ - 1 && R_ > 1;  // only the last micro-step communicates
    if (reduce_now) sync_->begin();
    model_->backward(reduce_now && cfg_.overlap ? [this](size_t off) { sync_->on_ready(off); }
                                                : std::function<void(size_t)>());
  }
  loader_pos_ += uint64_t(R_) * A_ * B_;
  ops_.synchronize();  // Note [Step phases]: the backward has run, not just been queued
  const auto t_fwd_bwd = clock_t_::now();
  if (R_ > 1) mt.comm_ms = 1000.0 * sync_->finish();
  const auto t_comm = clock_t_::now();

  // Every rank takes the same branches below: loss and norm are all-reduced values.
  mt.loss = comm_.all_reduce_host(loss_sum / A_, RedOp::Avg);
  const float* g = model_->grads();
  double sumsq = ops_.sum_squares(g + shard_begin_, shard_end_ - shard_begin_);
  sumsq = comm_.all_reduce_host(sumsq, shard_end_ - shard_begin_ == n_ ? RedOp::Max : RedOp::Sum);
  mt.grad_norm = std::sqrt(sumsq);
  mt.lr = lr_at(step_);
  if (std::isfinite(mt.grad_norm)) {
    AdamWParams hp;
    hp.lr = float(mt.lr);
    hp.beta1 = cfg_.beta1;
    hp.beta2 = cfg_.beta2;
    hp.eps = cfg_.eps;
    hp.grad_scale = (cfg_.grad_clip > 0 && mt.grad_norm > cfg_.grad_clip) ? float(cfg_.grad_clip / mt.grad_norm) : 1.0f;
    hp.t = ++adam_t_;
    const bool copy = master_own_.get() != nullptr;
    for (const ParamTensor& t : model_->layout().tensors) {
      const size_t lo = std::max(t.offset, shard_begin_), hi = std::min(t.offset + t.numel, shard_end_);
      if (hi <= lo) continue;
      hp.weight_decay = t.decay ? cfg_.weight_decay : 0.0f;
      ops_.adamw(master_ + lo, copy ? model_->params().at(lo) : Ptr(), m_.f32() + (lo - shard_begin_),
                 v_.f32() + (lo - shard_begin_), g + lo, hi - lo, hp);
    }
    if (shard_end_ - shard_begin_ != n_) {  // ZeRO-1: every rank fetches the shards it did not update
      comm_.all_gather(master_, even_split(n_, R_), DType::F32);
      if (copy) ops_.convert(model_->params(), Ptr(master_, DType::F32), n_);
    }
  } else if (!cfg_.quiet) {
    std::printf("warning: step %d: non-finite gradient norm; update skipped on every rank\n", step_ + 1);
  }
  ops_.synchronize();
  ++step_;
  mt.step = step_;
  const auto t_end = clock_t_::now();
  const auto ms_between = [](clock_t_::time_point a, clock_t_::time_point b) {
    return 1000.0 * std::chrono::duration<double>(b - a).count();
  };
  mt.ms = ms_between(t0, t_end);
  mt.data_ms = ms_between(t0, t_data);
  mt.fwd_bwd_ms = ms_between(t_data, t_fwd_bwd);
  mt.opt_ms = ms_between(t_comm, t_end);
  const double tokens = double(R_) * A_ * B_ * T_;
  mt.tokens_per_s = tokens / (mt.ms / 1000.0);
  mt.mfu = flops_per_token_ * mt.tokens_per_s / (double(R_) * peak_flops_);
  return mt;
}

double Trainer::validate() {
  if (!val_set_ || cfg_.val_seqs == 0) return NAN;
  const size_t K = std::min<size_t>(size_t(cfg_.val_seqs), val_set_->num_sequences());
  double sum = 0, count = 0;
  std::vector<int> mine;
  for (size_t j = size_t(rank_); j < K; j += size_t(R_)) mine.push_back(int(j));
  for (size_t i = 0; i < mine.size(); i += size_t(B_)) {
    const int b = int(std::min<size_t>(size_t(B_), mine.size() - i));
    for (int k = 0; k < b; ++k)
      val_set_->get(size_t(mine[i + k]), inputs_.data() + size_t(k) * T_, targets_.data() + size_t(k) * T_);
    sum += model_->forward(inputs_.data(), targets_.data(), b, T_) * double(b) * T_;
    count += double(b) * T_;
  }
  sum = comm_.all_reduce_host(sum, RedOp::Sum);
  count = comm_.all_reduce_host(count, RedOp::Sum);
  return count > 0 ? sum / count : NAN;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s > 1e15) return "?";  // 30 million years: beyond that llround may overflow
  s = std::max(0.0, s);
  const long long r = std::llround(s);
  if (r < 60) return strfmt("%llds", r);
  if (r < 3600) return strfmt("%lldm%02llds", r / 60, r % 60);
  const long long m = std::llround(s / 60);  // minutes, rounded once so that 59.6 min reads 1h00m
  if (m < 24 * 60) return strfmt("%lldh%02lldm", m / 60, m % 60);
  const long long h = std::llround(s / 3600);
  return strfmt("%lldd%02lldh", h / 24, h % 24);
}

// Note [ETA]
// The time left is (steps left) x (the mean wall time per step since the warm-up). The first two steps
// a process runs (first touches of memory, the thread pool starting, cuBLAS choosing algorithms) are
// left out as soon as a later step has been measured: up to the third step the estimate rests on the
// latest step alone, from the fourth on it is the mean from the third. It is wall time between step
// lines, not the step's own ms: the validation and checkpoint time of the steps so far is included,
// spread over them, so the estimate says when the run will end, and the mean absorbs the jumps that a
// validation every N steps gives single steps. After a resume the mean starts afresh (this process's
// steps only, and elapsed_s restarts at 0); the percentage is of the whole run.
void Trainer::estimate_time_left(StepMetrics& m, double elapsed) {
  ++steps_run_;
  if (steps_run_ <= 2) eta_marks_[steps_run_] = elapsed;
  const int skip = std::min(2, steps_run_ - 1);
  const double per_step = (elapsed - eta_marks_[skip]) / double(steps_run_ - skip);
  m.elapsed_s = elapsed;
  m.eta_s = double(cfg_.steps - step_) * per_step;
}

void Trainer::log_step(const StepMetrics& m) {
  const double exposed = m.ms > 0 ? m.comm_ms / m.ms : 0;
  if (!cfg_.quiet && (m.step % cfg_.log_every == 0 || m.step == cfg_.steps || !std::isnan(m.val_loss))) {
    std::printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %8.0f tok/s | mfu %5.2f%%", m.step,
                cfg_.steps, m.loss, m.lr, m.grad_norm, m.ms, m.tokens_per_s, 100.0 * m.mfu);
    if (R_ > 1) std::printf(" | comm exposed %.1f ms (%.0f%%)", m.comm_ms, 100.0 * exposed);
    if (!std::isnan(m.val_loss)) std::printf(" | val %.4f", m.val_loss);
    std::printf(" | %d%% eta %s\n", int(100.0 * m.step / cfg_.steps), format_duration(m.eta_s).c_str());
    std::fflush(stdout);
  }
  if (metrics_) {
    nlohmann::json j = {{"step", m.step},
                        {"loss", m.loss},
                        {"lr", m.lr},
                        {"grad_norm", m.grad_norm},
                        {"ms", m.ms},
                        {"tokens_per_s", m.tokens_per_s},
                        {"tokens_per_s_per_rank", m.tokens_per_s / R_},
                        {"mfu", m.mfu},
                        {"comm_exposed_ms", m.comm_ms},
                        {"comm_exposed_frac", exposed},
                        {"ranks", R_},
                        {"peak_mem_mb", double(ops_.peak_bytes()) / (1024.0 * 1024.0)},
                        // where the time went (Note [Step phases]) and what was run: `simulate --calibrate`
                        // reads these names
                        {"data_ms", m.data_ms},
                        {"fwd_bwd_ms", m.fwd_bwd_ms},
                        {"opt_ms", m.opt_ms},
                        {"batch", B_},
                        {"seq", T_},
                        {"grad_accum", A_},
                        {"zero", cfg_.zero},
                        {"bucket_mb", cfg_.bucket_mb},
                        {"overlap", cfg_.overlap},
                        {"device", cfg_.device},
                        {"comm", comm_.name()},
                        {"params", model_->num_params()},
                        {"flops_per_token", flops_per_token_},
                        {"layers", mcfg_.num_layers},
                        {"heads", mcfg_.num_heads},
                        {"channels", mcfg_.channels},
                        {"vocab", mcfg_.vocab_size},
                        {"padded_vocab", mcfg_.padded_vocab_size},
                        {"max_seq_len", mcfg_.max_seq_len},
                        {"peak_tflops", peak_flops_ / 1e12},
                        {"omp_threads", omp_get_max_threads()},
                        {"elapsed_s", m.elapsed_s},
                        {"eta_s", m.eta_s}};
    if (!std::isnan(m.val_loss)) j["val_loss"] = m.val_loss;
    reopen_metrics_if_deleted(m.step);
    // A full disk must not end the run (checkpoints may live elsewhere), nor go unnoticed: warn once.
    const bool ok = std::fprintf(metrics_, "%s\n", json_text(j).c_str()) >= 0 && std::fflush(metrics_) == 0;
    if (!ok && !metrics_failed_) {
      metrics_failed_ = true;
      std::fprintf(stderr, "warning: --metrics %s: write failed at step %d (%s); metrics from here on may be lost\n",
                   cfg_.metrics.c_str(), m.step, std::strerror(errno));
    }
    if (ok) metrics_failed_ = false;
  }
}

// A --metrics file deleted during the run (its directory removed, a log rotation) still takes writes, into
// an inode nobody can read: every later line would be lost without a word. So each step checks the link
// count (one fstat) and recreates the file where it was, appending; if that fails, it warns once and tries
// again at the next step.
void Trainer::reopen_metrics_if_deleted(int step) {
  struct stat st {};
  if (::fstat(::fileno(metrics_), &st) != 0 || st.st_nlink > 0) return;
  try {
    std::FILE* f = open_output_file(cfg_.metrics, "--metrics", true);
    std::fclose(metrics_);
    metrics_ = f;
    metrics_gone_ = false;
    std::fprintf(stderr, "warning: --metrics %s was deleted during the run; recreated it at step %d (the lines "
                         "before are lost)\n", cfg_.metrics.c_str(), step);
  } catch (const std::exception& e) {
    if (!metrics_gone_)
      std::fprintf(stderr, "warning: --metrics %s was deleted during the run and cannot be recreated (%s); metrics "
                           "from step %d on are lost until it can\n", cfg_.metrics.c_str(), e.what(), step);
    metrics_gone_ = true;
  }
}

TrainResult Trainer::run() {
  TrainResult res;
  res.start_step = step_;
  res.final_step = step_;
  res.last_checkpoint = resumed_from_;
  // Every rank has the same step_ here (agreed at resume), so all take this branch or none.
  if (step_ >= cfg_.steps) {
    if (!cfg_.quiet)
      std::printf("nothing to train: %s is already at step %d of --steps %d (raise --steps to continue)\n",
                  resumed_from_.c_str(), step_, cfg_.steps);
    watchdog_phase("shutdown");
    return res;
  }
  // A stop requested during start-up (reading data, building the model, loading a checkpoint), or a
  // --stop-at the resumed checkpoint has reached already: stop before training. Nothing was trained since
  // the state we started from, so there is nothing new to save (and a slow save could outlast the grace
  // period of whoever sent the signal).
  const bool stop_now = stop_requested() || (cfg_.stop_at > 0 && step_ >= cfg_.stop_at);
  if (comm_.all_reduce_host(stop_now ? 1.0 : 0.0, RedOp::Max) > 0) {
    res.stopped_early = true;
    if (!cfg_.quiet)
      std::printf("stopping before step %d (%s): nothing trained, nothing to save%s\n", step_ + 1,
                  cfg_.stop_at > 0 && step_ >= cfg_.stop_at ? "--stop-at already reached"
                                                            : "stop requested during start-up",
                  resumed_from_.empty() ? "" : ("; the run stays at " + resumed_from_).c_str());
    watchdog_phase("shutdown");
    return res;
  }
  auto t_work = clock_t_::now();
  const auto t_run = t_work;
  while (step_ < cfg_.steps) {
    watchdog_phase(strfmt("step %d", step_ + 1));
    StepMetrics m = train_step();
    const bool last = step_ == cfg_.steps;
    if ((cfg_.val_every > 0 && step_ % cfg_.val_every == 0) || last) {
      watchdog_phase(strfmt("validation after step %d", step_));
      m.val_loss = validate();
    }
    estimate_time_left(m, seconds_since(t_run));
    log_step(m);
    res.steps.push_back(m);
    if (R_ > 1 && cfg_.check_every > 0 && (step_ % cfg_.check_every == 0 || last)) {
      watchdog_phase(strfmt("replica check after step %d", step_));
      check_replicas();
    }
    // Stopping is agreed: one rank's signal stops every rank after the same step.
    const bool want_stop = stop_requested() || (cfg_.stop_at > 0 && step_ >= cfg_.stop_at);
    const bool stop = comm_.all_reduce_host(want_stop ? 1.0 : 0.0, RedOp::Max) > 0;
    if ((cfg_.ckpt_every > 0 && step_ % cfg_.ckpt_every == 0) || last || stop) {
      watchdog_phase(strfmt("checkpoint after step %d", step_), checkpoint_io_allowance_s());
      const std::string path = save(last || stop);  // Note [Checkpoint failures]
      if (!path.empty()) res.last_checkpoint = path;
    }
    watchdog_beat(seconds_since(t_work));  // the step with its validation and checkpoint
    t_work = clock_t_::now();
    if (stop && !last) {
      res.stopped_early = true;
      if (!cfg_.quiet)
        std::printf("stopping after step %d (%s)\n", step_,
                    cfg_.ckpt_dir.empty() ? "no --ckpt-dir: nothing saved"
                                          : ("checkpoint " + res.last_checkpoint).c_str());
      break;
    }
  }
  watchdog_phase("shutdown");
  res.final_step = step_;
  return res;
}

// Note [Replica check]
// Data-parallel replicas must hold bit-identical parameters after every step: they apply the same
// all-reduced gradients with the same optimizer (under ZeRO-1 the shards are all-gathered back). A
// replica that differs has been corrupted (a flipped bit in memory or on a link, a faulty GPU) or hit a
// nondeterministic bug, and would drift silently. Every --check-every steps each rank therefore reduces
// its fp32 master parameters to a fingerprint: the CRC-32 of the bytes on the CPU (exact), and on a GPU
// the sum and the sum of squares in the deterministic fixed-order reduction (no 500 MB download). The
// fingerprints are compared with all_ranks_equal (exactly, as hex floats); on a mismatch each rank's value is collected,
// rank 0 names the ranks that differ from the majority, and the job ends with exit 1 (resume from the
// last checkpoint). Cost: one pass over the parameters per check (about 0.1 s for d12 on a CPU core).
// Test hook: MC_TEST_CORRUPT_PARAMS=<rank>:<step> flips one bit of that rank's first parameter after
// that step.
void Trainer::check_replicas() {
  if (const char* hook = std::getenv("MC_TEST_CORRUPT_PARAMS")) {
    int r = -1, at = -1;
    if (std::sscanf(hook, "%d:%d", &r, &at) == 2 && r == rank_ && at == step_) {
      float x;
      ops_.download(&x, master_, sizeof(x));
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      bits ^= 1u << 20;
      std::memcpy(&x, &bits, 4);
      ops_.upload(master_, &x, sizeof(x));
    }
  }
  double fp[2];
  if (!ops_.on_device()) {
    fp[0] = double(crc32_z(0L, reinterpret_cast<const Bytef*>(master_), n_ * sizeof(float)));
    fp[1] = 0;
  } else {
    fp[0] = ops_.sum(master_, n_);
    fp[1] = ops_.sum_squares(master_, n_);
  }
  if (all_ranks_equal(comm_, strfmt("%a %a", fp[0], fp[1]))) return;  // %a: exact, and NaN prints as nan
  // Collect every rank's fingerprint (a rare path: R small all-reduces), then group.
  std::vector<std::pair<double, double>> all(static_cast<size_t>(R_));
  for (int r = 0; r < R_; ++r)
    for (int k = 0; k < 2; ++k) {
      const double mine = r == rank_ ? (std::isnan(fp[k]) ? -1.0 : fp[k]) : -INFINITY;
      (k == 0 ? all[size_t(r)].first : all[size_t(r)].second) = comm_.all_reduce_host(mine, RedOp::Max);
    }
  if (rank_ == 0) {
    std::map<std::pair<double, double>, std::vector<int>> groups;
    for (int r = 0; r < R_; ++r) groups[all[size_t(r)]].push_back(r);
    const std::vector<int>* majority = nullptr;
    for (const auto& [k, ranks] : groups)
      if (!majority || ranks.size() > majority->size()) majority = &ranks;
    auto list = [](const std::vector<int>& v) {
      std::string s;
      for (int r : v) s += (s.empty() ? "" : ", ") + std::to_string(r);
      return s;
    };
    std::string differ;
    for (const auto& [k, ranks] : groups)
      if (&ranks != majority) differ += (differ.empty() ? "" : ", ") + list(ranks);
    std::fprintf(stderr,
                 "minicolossus: parameter replicas differ after step %d: rank%s %s differ%s from rank%s %s (silent data "
                 "corruption or a nondeterministic bug; --check-every); stopping: resume from the last checkpoint\n",
                 step_, differ.find(',') == std::string::npos ? "" : "s", differ.c_str(),
                 differ.find(',') == std::string::npos ? "s" : "", majority->size() == 1 ? "" : "s",
                 list(*majority).c_str());
    std::fflush(stderr);
  }
  throw AgreedExit(1);
}

std::vector<float> Trainer::master_params() {
  std::vector<float> out(n_);
  ops_.download(out.data(), master_, n_ * sizeof(float));
  return out;
}

// The least time the watchdog allows a checkpoint write or read: the file's bytes (parameters, AdamW m and
// v) at 20 MB/s, a slow network file system. Its peers wait while rank 0 writes (or the slowest rank
// reads), and a 1.5B-parameter model's 18 GB must not be taken for a hung rank (Note [Watchdog]).
double Trainer::checkpoint_io_allowance_s() const { return 12.0 * double(n_) / 20e6; }

// Note [Checkpoint failures]: rank 0 writes; what happens when it cannot (disk full, directory gone) is
// agreed by all ranks. A checkpoint the run ends on (the last step, a stop) must succeed: every rank
// then exits 1 with rank 0's message. A periodic one may fail: rank 0 warns and training goes on, since
// stopping would lose more than the missed checkpoint (the next one tries again).
std::string Trainer::save(bool required) {
  if (cfg_.ckpt_dir.empty()) return "";
  // Optimizer state is gathered to full size so the file does not depend on the world size.
  std::vector<float> m(n_), v(n_);
  if (shard_end_ - shard_begin_ == n_) {
    ops_.download(m.data(), m_.get(), n_ * sizeof(float));
    ops_.download(v.data(), v_.get(), n_ * sizeof(float));
  } else {
    Buffer full(ops_, n_ * sizeof(float));
    const auto counts = even_split(n_, R_);
    for (auto [src, dst] : {std::pair<Buffer*, std::vector<float>*>{&m_, &m}, {&v_, &v}}) {
      ops_.copy(full.f32() + shard_begin_, src->get(), (shard_end_ - shard_begin_) * sizeof(float));
      comm_.all_gather(full.get(), counts, DType::F32);
      ops_.download(dst->data(), full.get(), n_ * sizeof(float));
    }
  }
  const std::string path = checkpoint_path(cfg_.ckpt_dir, step_);
  std::exception_ptr err;
  if (rank_ == 0) {
    const std::vector<float> params = master_params();
    nlohmann::json meta = {{"format", "minicolossus-checkpoint"},
                           {"version", 1},
                           {"git", MC_GIT_REV},
                           {"model", model_json(mcfg_)},
                           {"tokenizer", data_.tokenizer},
                           {"data_dir", data_.dir},
                           {"step", step_},
                           {"loader_pos", loader_pos_},
                           {"adam_t", adam_t_},
                           {"seed", cfg_.seed},
                           {"seq", T_},
                           {"global_batch", uint64_t(R_) * A_ * B_},
                           {"world_size", R_},
                           {"config", config_json(cfg_)}};
    try {
      save_checkpoint(path, meta, {{"params", params.data(), n_}, {"adam_m", m.data(), n_}, {"adam_v", v.data(), n_}});
      prune_checkpoints(cfg_.ckpt_dir, cfg_.ckpt_keep, step_);
      if (!cfg_.quiet) std::printf("saved checkpoint %s\n", path.c_str());
    } catch (const std::exception& e) {
      // The checkpoint the run ends on: say which step is lost and what is left to resume from.
      if (required) {
        const auto left = list_checkpoints(cfg_.ckpt_dir);
        err = std::make_exception_ptr(RuntimeError(strfmt(
            "checkpoint after step %d failed: %s; %s", step_, e.what(),
            left.empty() ? ("--ckpt-dir " + cfg_.ckpt_dir + " holds no checkpoint").c_str()
                         : ("the newest checkpoint in --ckpt-dir is " + left.front()).c_str())));
      } else {
        err = std::current_exception();
      }
    } catch (...) {
      err = std::current_exception();
    }
  }
  if (required) {
    agree_on_failure(comm_, err);  // also the barrier: nobody returns before the file is in place
    return path;
  }
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: checkpoint after step %d failed: %s; training goes on, the next checkpoint "
                           "tries again\n", step_, e.what());
    }
  }
  const bool ok = comm_.all_reduce_host(err ? 0.0 : 1.0, RedOp::Min) > 0;
  return ok ? path : "";
}

// Note [Changed hyperparameters on resume]
// --resume continues a run with the flags given now: like --lr or --steps, the AdamW flags (--beta1,
// --beta2, --eps, --weight-decay) may change, and the new values apply from the resumed step on, to the
// moments m and v that the checkpoint holds (the bias correction 1 - beta^t then uses the new beta with
// the old t: exact only if beta is unchanged, and close to 1 either way once t is in the hundreds).
// Since that changes the optimizer a run was started with, rank 0 says so on stderr, naming each flag
// and both values. Checkpoints carry the flags in "config"; an entry that is absent or not a number is
// not compared (the metadata is input: Note [Checkpoint metadata is input]).
namespace {
void warn_changed_optimizer(const nlohmann::json& meta, int step, const TrainConfig& c) {
  const auto cfg = meta.find("config");
  if (cfg == meta.end() || !cfg->is_object()) return;
  struct Flag {
    const char *key, *flag;
    float now;
  };
  const Flag flags[] = {{"beta1", "--beta1", c.beta1},
                        {"beta2", "--beta2", c.beta2},
                        {"eps", "--eps", c.eps},
                        {"weight_decay", "--weight-decay", c.weight_decay}};
  for (const Flag& f : flags) {
    const auto it = cfg->find(f.key);
    if (it == cfg->end() || !it->is_number()) continue;
    // Compared as doubles: the checkpoint wrote the float exactly, and a hostile value out of float's
    // range must not be narrowed (undefined behaviour).
    const double was = it->get<double>();
    if (was == double(f.now)) continue;
    std::fprintf(stderr,
                 "warning: --resume: %s is %g; the checkpoint was trained with %g (it applies from step %d on)\n",
                 f.flag, double(f.now), was, step + 1);
  }
  // --seed orders the data (a permutation per epoch): another seed mid-epoch repeats some sequences and
  // skips others, and the run is no longer the one an uninterrupted run would have trained.
  const auto seed = cfg->find("seed");
  if (seed != cfg->end() && seed->is_number_unsigned() && seed->get<uint64_t>() != c.seed)
    std::fprintf(stderr,
                 "warning: --resume: --seed is %llu; the checkpoint was trained with %llu (the data order changes "
                 "from step %d on: some sequences of this epoch repeat, others are skipped)\n",
                 (unsigned long long)c.seed, (unsigned long long)seed->get<uint64_t>(), step + 1);
}
}  // namespace

// Resumes from the newest checkpoint in --ckpt-dir that loads and verifies; any newer one that does
// not (corrupt bytes, invalid metadata, unreadable, another model or batch) is reported with its reason
// and skipped. Every rank reads the file itself (shared storage), and the ranks check they agree.
bool Trainer::try_resume() {
  LoadedCheckpoint ck;
  bool found = false;
  const uint64_t G = uint64_t(R_) * A_ * B_;
  // Why a checkpoint that loads cannot continue this run ("" if it can).
  auto mismatch = [&](const LoadedCheckpoint& c) -> std::string {
    const auto& meta = c.meta;
    if (meta.at("model") != model_json(mcfg_))
      return strfmt("holds a different model (%s) than this run (%s)", json_text(meta.at("model")).c_str(),
                    json_text(model_json(mcfg_)).c_str());
    if (meta.at("global_batch").get<uint64_t>() != G || meta.at("seq").get<int>() != T_)
      return strfmt("was trained with a global batch of %llu sequences of %d tokens; this run has %llu of %d "
                    "(ranks x --batch x --grad-accum must match)",
                    (unsigned long long)meta.at("global_batch").get<uint64_t>(), meta.at("seq").get<int>(),
                    (unsigned long long)G, T_);
    return "";  // the tensors' sizes match the model: load_checkpoint checked them
  };
  std::string last_reason;
  run_agreed(comm_, [&] {
    for (const auto& path : list_checkpoints(cfg_.ckpt_dir)) {
      std::string why;
      try {
        ck = load_checkpoint(path);
        why = mismatch(ck);
      } catch (const std::bad_alloc&) {
        why = "not enough memory to load it";
      } catch (const std::exception& e) {
        why = e.what();
      }
      if (why.empty()) {
        found = true;
        break;
      }
      last_reason = why.rfind(path, 0) == 0 ? why : path + ": " + why;  // loader messages name the file already
      if (!cfg_.quiet) std::fprintf(stderr, "warning: --resume: skipping %s\n", last_reason.c_str());
    }
  });
  const double s = found ? double(ck.meta.at("step").get<int>()) : -1.0;
  if (comm_.all_reduce_host(s, RedOp::Min) != comm_.all_reduce_host(s, RedOp::Max))
    throw AgreedError("--resume: ranks found different checkpoints in " + cfg_.ckpt_dir +
                      " (is the directory shared by all ranks?)");
  if (!found) {
    if (!last_reason.empty())  // checkpoints exist but none can continue this run: refuse to start over
      throw AgreedError("--resume: no checkpoint in " + cfg_.ckpt_dir + " can continue this run (newest refusal: " +
                        last_reason + "); use another --ckpt-dir to start a new run");
    if (!cfg_.quiet) std::printf("--resume: no checkpoint in %s; starting from step 0\n", cfg_.ckpt_dir.c_str());
    return false;
  }
  run_agreed(comm_, [&] {
    const auto& meta = ck.meta;
    const auto& params = ck.get("params");
    step_ = meta.at("step").get<int>();
    loader_pos_ = meta.at("loader_pos").get<uint64_t>();
    adam_t_ = meta.at("adam_t").get<int>();
    model_->set_params(params);
    if (master_own_.get()) ops_.upload(master_, params.data(), n_ * sizeof(float));
    const size_t sn = shard_end_ - shard_begin_;
    ops_.upload(m_.get(), ck.get("adam_m").data() + shard_begin_, sn * sizeof(float));
    ops_.upload(v_.get(), ck.get("adam_v").data() + shard_begin_, sn * sizeof(float));
  });
  resumed_from_ = ck.path;
  const int ws = ck.meta.at("world_size").get<int>();
  if (!cfg_.quiet) {
    std::printf("resumed from %s (step %d, written by %d rank%s)\n", ck.path.c_str(), step_, ws, ws == 1 ? "" : "s");
    std::fflush(stdout);  // the warnings below come after this line
    warn_changed_optimizer(ck.meta, step_, cfg_);
  }
  return true;
}

}  // namespace mc
