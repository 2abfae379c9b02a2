// The training loop (see trainer.h).
#include "train/trainer.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/dynlib.h"
#include "core/errors.h"
#include "model/llmc_io.h"
#include "train/checkpoint.h"

namespace mc {

// ---- stop requests ---------------------------------------------------------------------------

namespace {
std::atomic<int> g_stop{0};
extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(1) != 0) {  // a second signal: give up at once
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
using clock_t_ = std::chrono::steady_clock;
double seconds_since(clock_t_::time_point t0) {
  return std::chrono::duration<double>(clock_t_::now() - t0).count();
}
uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
nlohmann::json config_json(const TrainConfig& c) {
  return {{"data", c.data_dir},   {"model", c.model},           {"init_from", c.init_from},
          {"batch", c.batch},     {"seq", c.seq},               {"grad_accum", c.grad_accum},
          {"steps", c.steps},     {"lr", c.lr},                 {"warmup", c.warmup},
          {"min_lr_frac", c.min_lr_frac}, {"weight_decay", c.weight_decay}, {"beta1", c.beta1},
          {"beta2", c.beta2},     {"eps", c.eps},               {"grad_clip", c.grad_clip},
          {"device", c.device},   {"comm", c.comm},             {"zero", c.zero},
          {"bucket_mb", c.bucket_mb}, {"overlap", c.overlap},   {"watchdog_s", c.watchdog_s},   {"ckpt_dir", c.ckpt_dir},
          {"ckpt_every", c.ckpt_every}, {"resume", c.resume},   {"seed", c.seed},
          {"metrics", c.metrics}, {"val_every", c.val_every},   {"val_seqs", c.val_seqs}};
}
nlohmann::json model_json(const ModelConfig& m) {
  return {{"max_seq_len", m.max_seq_len}, {"vocab_size", m.vocab_size}, {"padded_vocab_size", m.padded_vocab_size},
          {"num_layers", m.num_layers},   {"num_heads", m.num_heads},   {"channels", m.channels}};
}
}  // namespace

// SIGUSR1 too: Open MPI's mpirun (4.1) kills its ranks about a second after forwarding SIGTERM,
// but forwards SIGUSR1 and waits, so `kill -USR1 <mpirun>` is the graceful stop under mpirun.
void install_stop_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
}
bool stop_requested() { return g_stop.load() != 0; }

// ---- watchdog (Note [Watchdog]) --------------------------------------------------------------

namespace {
double now_s() { return std::chrono::duration<double>(clock_t_::now().time_since_epoch()).count(); }
}  // namespace

Watchdog::Watchdog(Communicator& comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s), last_beat_(now_s()) {
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const double limit = std::max(timeout_s_, 10.0 * slowest_s_.load());
      const double idle = now_s() - last_beat_.load();
      if (!stop_.load() && idle > limit) {
        std::fprintf(stderr,
                     "minicolossus: [rank %d] watchdog: no training progress for %.0f s (limit %.0f s, --watchdog-s); "
                     "a peer rank is hung or stopped; aborting the job\n",
                     comm_.rank(), idle, limit);
        std::fflush(stderr);
        comm_.abort(1);
      }
    }
  });
}

Watchdog::~Watchdog() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Watchdog::beat(double last_work_s) {
  slowest_s_.store(std::max(slowest_s_.load(), last_work_s));  // only this thread writes it
  last_beat_.store(now_s());
}

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
  MC_REQUIRE(c.weight_decay >= 0, "--weight-decay %g: must be >= 0", double(c.weight_decay));
  MC_REQUIRE(c.grad_clip >= 0, "--grad-clip %g: must be >= 0", double(c.grad_clip));
  MC_REQUIRE(c.min_lr_frac >= 0 && c.min_lr_frac <= 1, "--min-lr-frac %g: must be in [0, 1]", double(c.min_lr_frac));
  MC_REQUIRE(c.zero == 0 || c.zero == 1, "--zero %d: must be 0 or 1", c.zero);
  MC_REQUIRE(c.bucket_mb > 0, "--bucket-mb %g: must be positive", c.bucket_mb);
  MC_REQUIRE(c.ckpt_every >= 0, "--ckpt-every %d: must be >= 0", c.ckpt_every);
  MC_REQUIRE(c.val_every >= 0, "--val-every %d: must be >= 0", c.val_every);
  MC_REQUIRE(c.val_seqs >= 0, "--val-seqs %d: must be >= 0", c.val_seqs);
  MC_REQUIRE(c.log_every > 0, "--log-every %d: must be positive", c.log_every);
  MC_REQUIRE(c.stop_at >= 0, "--stop-at %d: must be >= 0", c.stop_at);
  MC_REQUIRE(c.watchdog_s >= 0, "--watchdog-s %g: must be >= 0 (0 turns it off)", c.watchdog_s);
  if (c.warmup < 0) c.warmup = std::min(700, c.steps / 20);
  if (c.data_dir.empty()) c.data_dir = default_data_dir();
  p.data = open_data_dir(c.data_dir);

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
  MC_REQUIRE(p.T <= p.model.max_seq_len, "--seq %d: longer than the model's context of %d tokens (--model %s)", p.T,
             p.model.max_seq_len, c.model.c_str());
  return p;
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
  train_set_ = std::make_unique<Dataset>(data_.train_files, data_.vocab_size, T_);
  if (!data_.val_files.empty()) {
    try {
      val_set_ = std::make_unique<Dataset>(data_.val_files, data_.vocab_size, T_);
    } catch (const UsageError& e) {  // too short for one sequence: train without validation
      if (rank_ == 0) std::fprintf(stderr, "warning: no validation: %s\n", e.what());
    }
  }
  loader_ = std::make_unique<Loader>(*train_set_, cfg_.seed);
  model_ = std::make_unique<GPT2>(mcfg_, ops, B_, T_);
  n_ = model_->num_params();
  inputs_.resize(size_t(B_) * T_);
  targets_.resize(size_t(B_) * T_);

  const size_t bucket_elems = std::max<size_t>(1, size_t(cfg_.bucket_mb * 1024 * 1024 / sizeof(float)));
  sync_ = std::make_unique<GradSync>(comm, model_->grads(), n_, bucket_elems, cfg_.zero == 1 && R_ > 1);
  shard_begin_ = sync_->shard_begin();
  shard_end_ = sync_->shard_end();
  if (ops.act_dtype() == DType::F32) {
    master_ = model_->params().f32();  // the compute copy is the master
  } else {
    master_own_ = Buffer(ops, n_ * sizeof(float));
    master_ = master_own_.f32();
  }
  m_ = Buffer(ops, (shard_end_ - shard_begin_) * sizeof(float));
  v_ = Buffer(ops, (shard_end_ - shard_begin_) * sizeof(float));
  peak_flops_ = 1e12 * (cfg_.peak_tflops > 0 ? cfg_.peak_tflops : (ops.on_device() ? 989.0 : 0.19));

  const std::vector<float> init = plan.init_params.empty() ? gpt2_init(mcfg_, model_->layout(), cfg_.seed) : plan.init_params;
  model_->set_params(init);
  if (master_own_.get()) ops.upload(master_, init.data(), n_ * sizeof(float));

  check_ranks_agree();
  const bool resumed = cfg_.resume && try_resume();
  if (rank_ == 0 && !cfg_.metrics.empty()) {
    metrics_ = std::fopen(cfg_.metrics.c_str(), resumed ? "a" : "w");
    if (!metrics_) throw UsageError("--metrics " + cfg_.metrics + ": cannot open for writing: " + std::strerror(errno));
  }
  print_config();
}

Trainer::~Trainer() {
  if (metrics_) std::fclose(metrics_);
}

// At start every rank hashes what must be identical and the hashes are compared: a rank with a
// different build, flags or data would otherwise train silently wrong (or deadlock later).
void Trainer::check_ranks_agree() {
  std::string s = std::string(MC_GIT_REV) + "|" + config_json(cfg_).dump() + "|" + model_json(mcfg_).dump();
  for (const auto* files : {&data_.train_files, &data_.val_files})
    for (const auto& f : *files) {
      struct stat st;
      s += "|" + f + ":" + std::to_string(::stat(f.c_str(), &st) == 0 ? st.st_size : -1);
    }
  const uint64_t h = fnv1a(s);
  const double hi = double(h >> 32), lo = double(h & 0xffffffffu);
  const bool same = comm_.all_reduce_host(hi, RedOp::Min) == comm_.all_reduce_host(hi, RedOp::Max) &&
                    comm_.all_reduce_host(lo, RedOp::Min) == comm_.all_reduce_host(lo, RedOp::Max);
  if (!same)
    throw AgreedError(
        "ranks disagree on the build, flags or data (configuration hash differs): every rank must run the same "
        "minicolossus binary with the same flags and the same --data");
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
  std::printf("config %s\n", config_json(cfg_).dump().c_str());
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

// One optimizer step:
//   next_batch -> forward -> backward (buckets reduce as they become ready) -> finish reduction
//   -> clip -> optimizer step (own shard under ZeRO, then all-gather) -> log
StepMetrics Trainer::train_step() {
  const auto t0 = clock_t_::now();
  StepMetrics mt;
  model_->zero_grads();
  double loss_sum = 0;
  for (int micro = 0; micro < A_; ++micro) {
    // Note [Global batch order]: step s covers global positions [s*G, (s+1)*G); micro-step m of rank r
    // takes the B sequences at offset (m*R + r)*B. Any split of G = R*A*B sees the same sequences.
    const uint64_t pos = loader_pos_ + (uint64_t(micro) * R_ + rank_) * B_;
    loader_->fill(pos, B_, inputs_.data(), targets_.data());
    loss_sum += model_->forward(inputs_.data(), targets_.data(), B_, T_, 1.0f / float(A_));
    const bool reduce_now = micro == A_ - 1 && R_ > 1;  // only the last micro-step communicates
    if (reduce_now) sync_->begin();
    model_->backward(reduce_now && cfg_.overlap ? [this](size_t off) { sync_->on_ready(off); }
                                                : std::function<void(size_t)>());
  }
  loader_pos_ += uint64_t(R_) * A_ * B_;
  if (R_ > 1) mt.comm_ms = 1000.0 * sync_->finish();

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
  mt.ms = 1000.0 * seconds_since(t0);
  const double tokens = double(R_) * A_ * B_ * T_;
  mt.tokens_per_s = tokens / (mt.ms / 1000.0);
  mt.mfu = flops_per_token(mcfg_, T_) * mt.tokens_per_s / (double(R_) * peak_flops_);
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

void Trainer::log_step(const StepMetrics& m) {
  const double exposed = m.ms > 0 ? m.comm_ms / m.ms : 0;
  if (!cfg_.quiet && (m.step % cfg_.log_every == 0 || m.step == cfg_.steps || !std::isnan(m.val_loss))) {
    std::printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %8.0f tok/s | mfu %5.2f%%", m.step,
                cfg_.steps, m.loss, m.lr, m.grad_norm, m.ms, m.tokens_per_s, 100.0 * m.mfu);
    if (R_ > 1) std::printf(" | comm exposed %.1f ms (%.0f%%)", m.comm_ms, 100.0 * exposed);
    if (!std::isnan(m.val_loss)) std::printf(" | val %.4f", m.val_loss);
    std::printf("\n");
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
                        {"peak_mem_mb", double(ops_.peak_bytes()) / (1024.0 * 1024.0)}};
    if (!std::isnan(m.val_loss)) j["val_loss"] = m.val_loss;
    std::fprintf(metrics_, "%s\n", j.dump().c_str());
    std::fflush(metrics_);
  }
}

TrainResult Trainer::run() {
  TrainResult res;
  res.start_step = step_;
  std::unique_ptr<Watchdog> dog;
  if (R_ > 1 && cfg_.watchdog_s > 0) dog = std::make_unique<Watchdog>(comm_, cfg_.watchdog_s);
  auto t_work = clock_t_::now();
  while (step_ < cfg_.steps) {
    StepMetrics m = train_step();
    const bool last = step_ == cfg_.steps;
    if ((cfg_.val_every > 0 && step_ % cfg_.val_every == 0) || last) m.val_loss = validate();
    log_step(m);
    res.steps.push_back(m);
    // Stopping is agreed: one rank's signal stops every rank after the same step.
    const bool want_stop = stop_requested() || (cfg_.stop_at > 0 && step_ >= cfg_.stop_at);
    const bool stop = comm_.all_reduce_host(want_stop ? 1.0 : 0.0, RedOp::Max) > 0;
    if ((cfg_.ckpt_every > 0 && step_ % cfg_.ckpt_every == 0) || last || stop) res.last_checkpoint = save();
    if (dog) dog->beat(seconds_since(t_work));  // the step with its validation and checkpoint
    t_work = clock_t_::now();
    if (stop && !last) {
      res.stopped_early = true;
      if (!cfg_.quiet) std::printf("stopping after step %d (checkpoint %s)\n", step_, res.last_checkpoint.c_str());
      break;
    }
  }
  res.final_step = step_;
  return res;
}

std::vector<float> Trainer::master_params() {
  std::vector<float> out(n_);
  ops_.download(out.data(), master_, n_ * sizeof(float));
  return out;
}

std::string Trainer::save() {
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
  if (rank_ == 0) {
    ::mkdir(cfg_.ckpt_dir.c_str(), 0755);
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
    save_checkpoint(path, meta, {{"params", params.data(), n_}, {"adam_m", m.data(), n_}, {"adam_v", v.data(), n_}});
    prune_checkpoints(cfg_.ckpt_dir, cfg_.ckpt_keep);
    if (!cfg_.quiet) std::printf("saved checkpoint %s\n", path.c_str());
  }
  comm_.barrier();
  return path;
}

// Resumes from the newest checkpoint in --ckpt-dir that verifies; a corrupt newer one is reported
// and skipped. Every rank reads the file itself (shared storage), and the ranks check they agree.
bool Trainer::try_resume() {
  LoadedCheckpoint ck;
  bool found = false;
  for (const auto& path : list_checkpoints(cfg_.ckpt_dir)) {
    try {
      ck = load_checkpoint(path);
      found = true;
      break;
    } catch (const UsageError& e) {
      if (!cfg_.quiet) std::fprintf(stderr, "warning: skipping checkpoint: %s\n", e.what());
    }
  }
  const double s = found ? ck.meta.at("step").get<double>() : -1.0;
  if (comm_.all_reduce_host(s, RedOp::Min) != comm_.all_reduce_host(s, RedOp::Max))
    throw AgreedError("--resume: ranks found different checkpoints in " + cfg_.ckpt_dir +
                      " (is the directory shared by all ranks?)");
  if (!found) {
    if (!cfg_.quiet) std::printf("--resume: no valid checkpoint in %s; starting from step 0\n", cfg_.ckpt_dir.c_str());
    return false;
  }
  const std::string& path = ck.path;
  const auto& meta = ck.meta;
  if (meta.at("model") != model_json(mcfg_))
    throw AgreedError(strfmt("--resume: %s holds a different model (%s) than this run (%s)", path.c_str(),
                             meta.at("model").dump().c_str(), model_json(mcfg_).dump().c_str()));
  const uint64_t G = uint64_t(R_) * A_ * B_;
  if (meta.at("global_batch").get<uint64_t>() != G || meta.at("seq").get<int>() != T_)
    throw AgreedError(strfmt(
        "--resume: %s was trained with a global batch of %llu sequences of %d tokens; this run has %llu of %d "
        "(ranks x --batch x --grad-accum must match)",
        path.c_str(), (unsigned long long)meta.at("global_batch").get<uint64_t>(), meta.at("seq").get<int>(),
        (unsigned long long)G, T_));
  const auto& params = ck.get("params");
  const auto& m = ck.get("adam_m");
  const auto& v = ck.get("adam_v");
  if (params.size() != n_ || m.size() != n_ || v.size() != n_)
    throw AgreedError(path + ": tensor sizes do not match the model");
  step_ = meta.at("step").get<int>();
  loader_pos_ = meta.at("loader_pos").get<uint64_t>();
  adam_t_ = meta.at("adam_t").get<int>();
  model_->set_params(params);
  if (master_own_.get()) ops_.upload(master_, params.data(), n_ * sizeof(float));
  const size_t sn = shard_end_ - shard_begin_;
  ops_.upload(m_.get(), m.data() + shard_begin_, sn * sizeof(float));
  ops_.upload(v_.get(), v.data() + shard_begin_, sn * sizeof(float));
  const int ws = meta.at("world_size").get<int>();
  if (!cfg_.quiet)
    std::printf("resumed from %s (step %d, written by %d rank%s)\n", path.c_str(), step_, ws, ws == 1 ? "" : "s");
  return true;
}

}  // namespace mc
