// minicolossus: subcommand dispatch. `minicolossus` with no subcommand (or only flags) trains.
// Exit codes: 0 success, 2 bad usage or input (one line naming the flag/file), 1 runtime failure.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/start_signals.h"
#include "dist/bench.h"
#include "dist/comm.h"
#include "dist/watchdog.h"
#include "train/commands.h"
#include "train/launch.h"
#include "mc_git_rev.h"  // generated: cmake/git_rev.cmake

namespace {
const char* kUsage =
    "minicolossus: train small GPT-2 models, data-parallel over MPI/NCCL.\n"
    "usage: minicolossus <command> [flags]   (each command has --help)\n"
    "  train            train a model (the default command; no flags: tiny model on the built-in corpus)\n"
    "  eval             validation loss of a checkpoint or llm.c model file\n"
    "  sample           generate text from a checkpoint or llm.c model file\n"
    "  prepare          tokenize a text file into train/val shards\n"
    "  export           write a checkpoint or llm.c model file as an llm.c model file or a Hugging Face model\n"
    "  info             describe a shard, data directory, checkpoint, llm.c, safetensors or tokenizer file\n"
    "  bench-allreduce  all-reduce bandwidth table (run under mpirun)\n"
    "  launch           run a training job under mpirun and restart it on the ranks that survive\n"
    "  simulate         predict step time, scaling, memory and goodput on 1 to 200,000 GPUs\n"
    "Launch data-parallel with: mpirun -np N minicolossus train ...\n";
// --watchdog-s from the raw arguments (the default if absent or not a number; the flag parser checks it later).
double early_watchdog_s(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* v = nullptr;
    if (std::strcmp(argv[i], "--watchdog-s") == 0 && i + 1 < argc) v = argv[i + 1];
    else if (std::strncmp(argv[i], "--watchdog-s=", 13) == 0) v = argv[i] + 13;
    if (!v) continue;
    char* end = nullptr;
    const double x = std::strtod(v, &end);
    if (end != v && *end == '\0' && x >= 0 && x < 1e9) return x;
  }
  return mc::TrainConfig{}.watchdog_s;
}

// Note [Standard output is checked]
// What eval, sample, info, simulate, export, prepare, bench-allreduce and --help print is their
// product, so a write that fails (stdout on a full disk or /dev/full, a closed descriptor, a reader
// that went away: `info --json F | head -1`) must not end in exit 0, nor in death by SIGPIPE: SIGPIPE
// is ignored, and once the command is done stdout is flushed and its error flag checked; a failure is
// one line and exit 1 (not the user's input). train and launch are exempt: their stdout is a log, and
// losing it must not fail a run that saved its checkpoint (README: Never hang, never lose a run).
int check_stdout(int rc) {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int e = errno;
  if (flushed && !std::ferror(stdout)) return rc;
  if (rc == 0) {  // otherwise the command's own error was reported already
    std::fprintf(stderr, "minicolossus: stdout: write failed%s%s\n", e ? ": " : "", e ? std::strerror(e) : "");
    rc = 1;
  }
  return rc;
}
}  // namespace

int main(int argc, char** argv) {
  mc::ensure_standard_fds();  // Note [Standard descriptors] (core/files.h): before anything opens a file
  // Note [OpenMP wait policy] (cpu_ops.cpp): spinning OpenMP workers halve OpenBLAS's speed, and
  // libgomp reads OMP_WAIT_POLICY only at load time, so start over once with it set. A user's own
  // setting is kept.
  // The real path, not /proc/self/exe: the kernel names a process after the file it executed, and
  // ps/top/pkill should see "minicolossus", not "exe".
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    // A handler a library installed is reset by exec, an ignored signal is kept: hand nohup's ignored
    // SIGHUP on (Note [Ignored at start], core/start_signals.cpp).
    if (mc::hup_ignored_at_start()) std::signal(SIGHUP, SIG_IGN);
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
      self[n] = '\0';
      execv(self, argv);  // fails if the binary was replaced or deleted meanwhile: try the open inode
    }
    execv("/proc/self/exe", argv);  // only returns on failure: then run as we are
  }
  std::string sub = argc >= 2 ? argv[1] : "train";
  // Note [Standard output is checked]. train installs its own handlers; launch's children (mpirun and
  // the ranks) would inherit an ignored SIGPIPE.
  const bool help = sub == "--help" || sub == "-h" || sub == "help" || sub == "--version";
  const bool trains = argc < 2 || sub == "train" || (sub.rfind('-', 0) == 0 && !help);
  if (!trains && sub != "launch") std::signal(SIGPIPE, SIG_IGN);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::printf("%s", kUsage);
    return check_stdout(0);
  }
  if (sub == "--version") {
    std::printf("minicolossus %s\n", MC_GIT_REV);
    return check_stdout(0);
  }
  // Flags without a subcommand go to train.
  std::vector<char*> args(argv, argv + argc);
  std::string name = "minicolossus " + sub;
  if (argc < 2 || argv[1][0] == '-') {
    sub = "train";
    name = "minicolossus train";
    args.insert(args.begin() + 1, nullptr);
  }
  args[1] = name.data();
  int sub_argc = int(args.size()) - 1;
  char** sub_argv = args.data() + 1;

  const bool distributed = sub == "train" || sub == "bench-allreduce";
  // A peer stopped during MPI's own start-up must not hang us either (Note [Watchdog]): watch from
  // before MPI_Init, with --watchdog-s if given (train validates it later and takes it over).
  if (sub == "train" && mc::launched_by_mpi()) mc::watchdog_start(early_watchdog_s(argc, argv), "start-up (MPI_Init)");
  int rc = 0;
  try {
    if (distributed) mc::dist_init(&argc, &argv);
    if (sub == "train") rc = mc::cmd_train(sub_argc, sub_argv);
    else if (sub == "eval") rc = mc::cmd_eval(sub_argc, sub_argv);
    else if (sub == "sample") rc = mc::cmd_sample(sub_argc, sub_argv);
    else if (sub == "export") rc = mc::cmd_export(sub_argc, sub_argv);
    else if (sub == "prepare") rc = mc::cmd_prepare(sub_argc, sub_argv);
    else if (sub == "info") rc = mc::cmd_info(sub_argc, sub_argv);
    else if (sub == "bench-allreduce") rc = mc::cmd_bench_allreduce(sub_argc, sub_argv);
    else if (sub == "launch") rc = mc::cmd_launch(sub_argc, sub_argv);
    else if (sub == "simulate") rc = mc::cmd_simulate(sub_argc, sub_argv);
    else {
      std::fprintf(stderr,
                   "minicolossus: unknown command '%s' (expected train|eval|sample|prepare|export|info|bench-allreduce|launch|simulate; "
                   "see --help)\n",
                   sub.c_str());
      rc = 2;
    }
  } catch (const mc::UsageError& e) {
    if (mc::this_rank() == 0) mc::report_error(e);
    rc = 2;
  } catch (const std::bad_alloc&) {  // "std::bad_alloc" alone does not say what ran out
    mc::report_error(mc::RuntimeError("out of host memory (an allocation failed)"));
    rc = 1;
  } catch (const std::exception& e) {
    mc::report_error(e);
    rc = 1;
  }
  if (distributed) mc::dist_finalize();
  if (sub != "train" && sub != "launch") rc = check_stdout(rc);
  return rc;
}
