// minicolossus launch (see launch.h): runs `mpirun ... minicolossus train <flags>`, waits, and on a
// failure probes the hosts, picks a rank count and batch split with the same global batch, and runs
// the job again with --resume. Prints one line per event and a summary with the effective training
// time (Note [Effective training time]).
#include "train/launch.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/errors.h"
#include "core/files.h"
#include "core/start_signals.h"
#include "train/checkpoint.h"
#include "train/commands.h"

namespace mc {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- stop requests: SIGINT/SIGTERM to launch ------------------------------------------------

volatile sig_atomic_t g_signals = 0;
extern "C" void on_launch_signal(int) { g_signals = g_signals + 1; }

void install_launch_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_launch_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A hang-up (the terminal or ssh session closed) is a stop request too, as in the trainer, unless it is
  // ignored (nohup): by default it would kill launch, and mpirun after it (PR_SET_PDEATHSIG), with no
  // checkpoint.
  if (hup_ignored_at_start())  // Note [Ignored at start] (core/start_signals.cpp)
    signal(SIGHUP, SIG_IGN);
  else
    sigaction(SIGHUP, &sa, nullptr);
}

// ---- child processes --------------------------------------------------------------------------

// Starts argv in its own process group (so a terminal's Ctrl-C reaches launch only, which turns it
// into a graceful stop), killed with SIGTERM if launch itself dies. quiet: output to /dev/null.
pid_t spawn(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) throw RuntimeError(strfmt("launch: fork failed: %s", std::strerror(errno)));
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (quiet) {
      const int fd = open("/dev/null", O_RDWR);
      if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
      }
    }
    execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "minicolossus launch: cannot run %s: %s\n", cargv[0], std::strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so the group exists before we might signal it
  return pid;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Waits for pid, polling so that a stop request is never missed: the first SIGINT/SIGTERM becomes
// SIGUSR1 to mpirun (the trainer checkpoints and exits 0; Open MPI forwards SIGUSR1 and waits), a
// second one SIGTERM, a third kills the process group. timeout_s > 0: kill the group after that long
// and return -1. Returns the exit code (128 + signal when killed).
int wait_for(pid_t pid, double timeout_s, bool forward_stops) {
  const auto t0 = Clock::now();
  int forwarded = 0;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return exit_code(status);
    if (r < 0 && errno != EINTR) return 1;
    if (forward_stops && g_signals > forwarded) {
      ++forwarded;
      if (forwarded == 1) {
        std::printf("launch: stop requested: asking the job to checkpoint and stop (SIGUSR1 to mpirun); no restart\n");
        std::fflush(stdout);
        kill(pid, SIGUSR1);
      } else {
        kill(forwarded == 2 ? pid : -pid, forwarded == 2 ? SIGTERM : SIGKILL);
      }
    }
    if (timeout_s > 0 && since(t0) > timeout_s) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Note [No leftovers]
// Open MPI puts each local rank in its own process group, so signalling mpirun's group does not reach
// them, and a rank that outlives mpirun (mpirun killed, a rank ignoring SIGTERM) would be reparented to
// init and keep the checkpoint directory's lock and its CPU/GPU. launch is therefore a child subreaper
// (PR_SET_CHILD_SUBREAPER): orphans of an attempt become its children, and after each attempt every
// child still alive is killed and reaped before the next one starts.
int kill_leftovers() {
  int killed = 0;
  const pid_t me = getpid();
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      const int pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
      std::string stat;
      std::getline(f, stat);
      const size_t rp = stat.rfind(')');
      char state = 0;
      int ppid = 0;
      if (rp == std::string::npos || std::sscanf(stat.c_str() + rp + 1, " %c %d", &state, &ppid) != 2) continue;
      if (ppid == me && state != 'Z' && kill(pid, SIGKILL) == 0) ++killed;
    }
    closedir(d);
  }
  const auto t0 = Clock::now();  // reap them (and any zombie), at most 5 s
  for (int status; since(t0) < 5;) {
    const pid_t r = waitpid(-1, &status, WNOHANG);
    if (r < 0) break;  // no children left
    if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return killed;
}

// ---- the train flags launch needs to read or change ---------------------------------------------

// Index of flag in args ("--flag value" or "--flag=value"), or -1.
int find_flag(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i < args.size(); ++i)
    if (args[i] == flag || args[i].rfind(flag + "=", 0) == 0) return int(i);
  return -1;
}
bool flag_value(const std::vector<std::string>& args, const std::string& flag, std::string& value) {
  const int i = find_flag(args, flag);
  if (i < 0) return false;
  if (args[i].size() > flag.size()) {
    value = args[i].substr(flag.size() + 1);
  } else {
    MC_REQUIRE(size_t(i) + 1 < args.size(), "%s: needs a value", flag.c_str());
    value = args[size_t(i) + 1];
  }
  return true;
}
// Removes every occurrence of flag (and its value when it takes one).
void drop_flag(std::vector<std::string>& args, const std::string& flag, bool takes_value) {
  for (int i; (i = find_flag(args, flag)) >= 0;) {
    const bool separate = takes_value && args[size_t(i)] == flag && size_t(i) + 1 < args.size();
    args.erase(args.begin() + i, args.begin() + i + (separate ? 2 : 1));
  }
}
// The integer value of flag (dflt when absent); UsageError unless it is an integer >= lo.
int int_flag(const std::vector<std::string>& args, const std::string& flag, int dflt, int lo = 1) {
  std::string v;
  if (!flag_value(args, flag, v)) return dflt;
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  MC_REQUIRE(!v.empty() && *end == '\0' && x >= lo && x < INT_MAX, "%s %s: must be an integer >= %d", flag.c_str(),
             v.c_str(), lo);
  return int(x);
}

// ---- hosts --------------------------------------------------------------------------------------

struct Host {
  std::string name;
  int slots = 1;
};

Host parse_host(const std::string& s, const std::string& flag) {
  Host h;
  const size_t c = s.rfind(':');
  h.name = s.substr(0, c);
  if (c != std::string::npos) {
    const std::string n = s.substr(c + 1);
    char* end = nullptr;
    const long x = std::strtol(n.c_str(), &end, 10);
    MC_REQUIRE(!n.empty() && *end == '\0' && x > 0 && x < 1000000, "%s: '%s': slots must be a positive integer",
               flag.c_str(), s.c_str());
    h.slots = int(x);
  }
  MC_REQUIRE(!h.name.empty(), "%s: '%s': empty host name", flag.c_str(), s.c_str());
  return h;
}

std::vector<Host> parse_hosts(const std::string& list) {
  std::vector<Host> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(parse_host(item, "--hosts"));
  MC_REQUIRE(!out.empty(), "--hosts '%s': no hosts", list.c_str());
  return out;
}

// Open MPI's hostfile: "name [slots=N] [max_slots=M]" per line, '#' comments; slots default to 1.
std::vector<Host> read_hostfile(const std::string& path) {
  std::istringstream in(read_input_file(path, "--hostfile"));  // a FIFO or directory is refused, never waited on
  std::vector<Host> out;
  int lineno = 0;
  for (std::string line; std::getline(in, line);) {
    ++lineno;
    line = line.substr(0, line.find('#'));
    std::stringstream ls(line);
    Host h;
    if (!(ls >> h.name)) continue;
    for (std::string kv; ls >> kv;) {
      if (kv.rfind("slots=", 0) == 0) h.slots = parse_host("x:" + kv.substr(6), "--hostfile " + path).slots;
      else
        MC_REQUIRE(kv.rfind("max_slots=", 0) == 0, "--hostfile %s: line %d: unknown field '%s'", path.c_str(), lineno,
                   kv.c_str());
    }
    out.push_back(h);
  }
  MC_REQUIRE(!out.empty(), "--hostfile %s: no hosts", path.c_str());
  return out;
}

std::string host_list(const std::vector<Host>& hosts) {
  std::string s;
  for (const auto& h : hosts) s += (s.empty() ? "" : ",") + h.name + ":" + std::to_string(h.slots);
  return s;
}

bool is_local(const std::string& h) {
  char me[256] = {0};
  gethostname(me, sizeof me - 1);
  const std::string full(me), shrt = full.substr(0, full.find('.'));
  return h == "localhost" || h.rfind("127.", 0) == 0 || h == "::1" || h == full || h == shrt;
}

// Note [Host probe]
// After a failure, each host of the original list is probed: the local machine is healthy by
// definition; another host must run `mpirun <--mpirun-args> --host H:1 -np 1 true` within --probe-s
// seconds (the same path mpirun's own launch takes: rsh/ssh agent, daemon, exec). A host that was
// lost and comes back is used again, so the job grows back to --np ranks. Test hook: the hosts named
// in MC_LAUNCH_FAIL_PROBE (comma-separated) fail their probe, which lets a single machine play a
// lost host (tests/cli/mpi_launch.sh uses localhost and 127.0.0.1 as two "hosts").
bool probe(const Host& h, const std::vector<std::string>& mpirun, double probe_s) {
  if (const char* fail = std::getenv("MC_LAUNCH_FAIL_PROBE")) {
    std::stringstream ss(fail);
    for (std::string x; std::getline(ss, x, ',');)
      if (x == h.name) return false;
  }
  if (is_local(h.name)) return true;
  std::vector<std::string> cmd = mpirun;
  for (const char* a : {"--host", "", "-np", "1", "true"}) cmd.push_back(a);
  cmd[cmd.size() - 4] = h.name + ":1";
  return wait_for(spawn(cmd, true), probe_s, false) == 0;
}

// ---- the batch split ----------------------------------------------------------------------------

struct Shape {
  int ranks = 0, batch = 0, accum = 0;
  long long global() const { return (long long)ranks * batch * accum; }
};

// Note [Keeping the global batch]
// --resume requires the checkpoint's global batch G = ranks x batch x accum (Note [Global batch
// order]: any split of G sees the same sequences, so the model is the one an uninterrupted run would
// have trained, up to float rounding of the reductions). With S healthy slots we choose ranks <= min(S,
// --np) and batch <= --batch with G % (ranks x batch) == 0, maximising ranks x batch (sequences in
// flight per micro-step: throughput) and, on a tie, batch (the user's --batch is kept when that costs
// nothing); accum = G / (ranks x batch). ranks = 1, batch = --batch always divides, so a split exists.
// Larger batches than --batch are never chosen: they might not fit in memory.
Shape choose_shape(long long G, int max_ranks, int max_batch) {
  Shape best;
  for (int r = max_ranks; r >= 1; --r)
    for (int b = max_batch; b >= 1; --b)
      if (G % ((long long)r * b) == 0) {
        const long long w = (long long)r * b, bw = (long long)best.ranks * best.batch;
        if (w > bw || (w == bw && b > best.batch)) best = {r, b, int(G / w)};
        break;
      }
  return best;
}

// ---- effective training time ----------------------------------------------------------------------

// Note [Effective training time]
// effective = productive step time / wall time of the launch. Productive: the "ms" of each optimizer
// step that the final model contains, counted once: the step's LAST completion in the metrics file
// (a step redone after a restart replaced the earlier one), and only steps after the checkpoint the
// launch started from and up to the newest checkpoint at the end (work after it was lost). Everything
// else is overhead: start-up, redone steps, checkpoint saves, validation, failure detection, probes.
// The trainer appends to --metrics when it resumes, so one file holds every attempt.
int newest_step(const std::string& ckpt_dir) {
  for (const auto& path : list_checkpoints(ckpt_dir)) {
    try {
      return read_checkpoint_meta(path).at("step").get<int>();
    } catch (const std::exception&) {  // unreadable: the trainer skips it too
    }
  }
  return 0;
}

struct Productive {
  double seconds = 0;
  int steps = 0;
};

Productive productive_time(const std::string& metrics, int after_step, int upto_step) {
  std::map<int, double> ms;  // step -> ms of its last completion
  std::string text;
  try {
    text = read_input_file(metrics, "--metrics");
  } catch (const UsageError&) {  // missing, or not a regular file (the trainer refused it): unknown
    return {};
  }
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    try {
      const auto j = nlohmann::json::parse(line);
      ms[j.at("step").get<int>()] = j.at("ms").get<double>();
    } catch (const std::exception&) {  // a line cut short by a kill
    }
  }
  Productive p;
  for (const auto& [step, t] : ms)
    if (step > after_step && step <= upto_step) {
      p.seconds += t / 1000.0;
      ++p.steps;
    }
  return p;
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw RuntimeError("launch: cannot resolve /proc/self/exe");
  return std::string(buf, size_t(n));
}

bool on_path(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return access(prog.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  for (std::string d; std::getline(ss, d, ':');)
    if (!d.empty() && access((d + "/" + prog).c_str(), X_OK) == 0) return true;
  return false;
}

}  // namespace

int cmd_launch(int argc, char** argv) {
  int np = 0, max_restarts = 3;
  std::string hosts_arg, hostfile, mpirun = "mpirun", mpirun_args;
  double probe_s = 10;
  std::vector<std::string> train;
  CLI::App app(
      "Run `mpirun -np N minicolossus train <train flags>` and, when a rank or host dies, run it again with "
      "--resume on the healthy hosts, keeping the global batch (ranks x batch x grad-accum). SIGINT/SIGTERM: "
      "graceful stop (checkpoint), no restart.\n"
      "Example: minicolossus launch --np 4 --max-restarts 5 -- --data DIR --batch 4 --ckpt-dir ck --ckpt-every 20",
      "launch");
  app.add_option("--np", np, "number of ranks")->required();
  app.add_option("--hosts", hosts_arg, "hosts with slots: h1:4,h2:4 (default: this machine)");
  app.add_option("--hostfile", hostfile, "Open MPI hostfile (name slots=N per line) instead of --hosts");
  app.add_option("--max-restarts", max_restarts, "relaunch at most this many times")->capture_default_str();
  app.add_option("--mpirun", mpirun, "the mpirun to use")->capture_default_str();
  app.add_option("--mpirun-args", mpirun_args, "extra mpirun arguments, split at spaces (e.g. \"--oversubscribe\")");
  app.add_option("--probe-s", probe_s, "seconds a host has to answer its probe after a failure")->capture_default_str();
  app.add_option("train-flags", train, "flags for `minicolossus train`, after --; --ckpt-dir is required");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;

  MC_REQUIRE(np > 0, "--np %d: must be positive", np);
  // Bounded: attempts are counted as max_restarts + 1 in an int, and a probe that may wait forever
  // (--probe-s inf) would hang launch on one silent host, which the probe exists to prevent.
  MC_REQUIRE(max_restarts >= 0 && max_restarts <= 1000000, "--max-restarts %d: must be in [0, 1000000]",
             max_restarts);
  MC_REQUIRE(probe_s > 0 && probe_s <= 86400, "--probe-s %g: must be in (0, 86400] seconds", probe_s);
  MC_REQUIRE(hosts_arg.empty() || hostfile.empty(), "--hosts and --hostfile: give one of them, not both");
  std::string ckpt_dir;
  MC_REQUIRE(flag_value(train, "--ckpt-dir", ckpt_dir) && !ckpt_dir.empty(),
             "--ckpt-dir: a train flag launch needs (restarts resume from it); add -- ... --ckpt-dir DIR");
  std::vector<Host> hosts;
  if (!hosts_arg.empty()) hosts = parse_hosts(hosts_arg);
  if (!hostfile.empty()) hosts = read_hostfile(hostfile);
  int total_slots = 0;
  for (const auto& h : hosts) total_slots += h.slots;
  MC_REQUIRE(hosts.empty() || total_slots >= np, "--np %d: more ranks than the %d slots of %s", np, total_slots,
             hostfile.empty() ? "--hosts" : "--hostfile");
  MC_REQUIRE(on_path(mpirun), "--mpirun %s: not found (install Open MPI, or give its path)", mpirun.c_str());
  std::vector<std::string> mpi_cmd = {mpirun};
  {
    std::stringstream ss(mpirun_args);
    for (std::string a; ss >> a;) mpi_cmd.push_back(a);
  }

  const TrainConfig dflt;
  Shape shape{np, int_flag(train, "--batch", dflt.batch), int_flag(train, "--grad-accum", dflt.grad_accum)};
  const long long G = shape.global();
  const int user_batch = shape.batch;
  const bool user_resume = find_flag(train, "--resume") >= 0;
  // A restart resumes from the newest checkpoint in --ckpt-dir: one from another run would be taken.
  MC_REQUIRE(user_resume || list_checkpoints(ckpt_dir).empty(),
             "--ckpt-dir %s: already holds checkpoints; add --resume to continue from them, or use an empty directory",
             ckpt_dir.c_str());
  std::string metrics;
  if (!flag_value(train, "--metrics", metrics) || metrics.empty()) {
    // Our own per-step log, beside the checkpoints (rank 0 writes it, possibly on another host).
    metrics = ckpt_dir + "/launch-metrics.jsonl";
    std::remove(metrics.c_str());
    drop_flag(train, "--metrics", true);
    train.push_back("--metrics");
    train.push_back(metrics);
  }
  if (int_flag(train, "--ckpt-every", 0, 0) == 0)
    std::printf("launch: warning: --ckpt-every is 0: checkpoints are written only at the end, so a restart redoes "
                "every step since the start\n");
  const int start_step = user_resume ? newest_step(ckpt_dir) : 0;
  const std::string exe = self_exe();
  install_launch_handlers();
  prctl(PR_SET_CHILD_SUBREAPER, 1);  // Note [No leftovers]
  // Note [Fast failure detection]
  // When a rank dies, Open MPI's mpirun sends SIGTERM to the others, waits odls_base_sigkill_timeout
  // (default 1 s) and then SIGKILLs them. The trainer takes SIGTERM as a graceful-stop request, which a
  // rank blocked in a collective with a dead peer never acts on, so every failure cost 2 s before
  // mpirun exited (measured: 2.04 s; 0.11 s with the timeout at 0). The job is lost anyway and
  // checkpoints are written atomically, so launch sets the timeout to 0 unless the user set it.
  // Graceful stops are unaffected: they go through SIGUSR1, which mpirun forwards and waits on.
  setenv("OMPI_MCA_odls_base_sigkill_timeout", "0", 0);

  const auto t_launch = Clock::now();
  std::vector<Host> healthy = hosts;
  std::string why;  // the reason for this attempt, printed with it
  int rc = 1, attempt = 1;
  for (;; ++attempt) {
    if (g_signals > 0) {  // asked to stop between two attempts: do not start another
      std::printf("launch: stop requested before attempt %d; not restarting\n", attempt);
      --attempt;
      rc = 1;
      break;
    }
    std::vector<std::string> cmd = mpi_cmd;
    cmd.push_back("-np");
    cmd.push_back(std::to_string(shape.ranks));
    if (!healthy.empty()) {
      cmd.push_back("--host");
      cmd.push_back(host_list(healthy));
    }
    cmd.push_back(exe);
    cmd.push_back("train");
    cmd.insert(cmd.end(), train.begin(), train.end());
    const std::string where = healthy.empty() ? "" : " on " + host_list(healthy);
    std::printf("launch: attempt %d/%d: %d ranks x batch %d x accum %d = %lld sequences%s%s\n", attempt,
                max_restarts + 1, shape.ranks, shape.batch, shape.accum, G, where.c_str(),
                why.empty() ? "" : (" (" + why + ")").c_str());
    const auto t0 = Clock::now();
    const pid_t pid = spawn(cmd, false);
    rc = wait_for(pid, 0, true);
    kill(-pid, SIGKILL);  // anything of this attempt still in mpirun's process group
    if (const int n = kill_leftovers())
      std::printf("launch: killed %d process%s left over from attempt %d (Note [No leftovers])\n", n, n == 1 ? "" : "es",
                  attempt);
    const double took = since(t0);
    if (g_signals > 0) {
      std::printf("launch: the job stopped on request (exit %d after %.0f s)%s\n", rc, took,
                  rc == 0 ? "; continue it with --resume" : "");
      rc = rc == 0 ? 0 : (rc == 2 ? 2 : 1);
      break;
    }
    if (rc == 0) {
      std::printf("launch: the job finished (attempt %d, %.0f s)\n", attempt, took);
      break;
    }
    if (rc == 2) {
      std::printf("launch: the job rejected its input (exit 2 after %.0f s); not restarting\n", took);
      break;
    }
    if (attempt > max_restarts) {
      std::printf("launch: giving up: attempt %d failed (exit %d after %.0f s) and all %d restarts (--max-restarts) are used\n",
                  attempt, rc, took, max_restarts);
      rc = 1;
      break;
    }
    // Restart: which hosts are left, and how to split the same global batch over them.
    int slots = np;
    if (!hosts.empty()) {
      healthy.clear();
      std::string report;
      slots = 0;
      for (const auto& h : hosts) {
        const bool ok = probe(h, mpi_cmd, probe_s);
        report += strfmt("%s%s:%d %s", report.empty() ? "" : ", ", h.name.c_str(), h.slots, ok ? "ok" : "LOST");
        if (ok) {
          healthy.push_back(h);
          slots += h.slots;
        }
      }
      std::printf("launch: host probe: %s\n", report.c_str());
      if (slots == 0) {
        std::printf("launch: giving up: no host answered its probe\n");
        rc = 1;
        break;
      }
    }
    const Shape next = choose_shape(G, std::min(slots, np), user_batch);
    if (next.ranks != shape.ranks || next.batch != shape.batch) {
      drop_flag(train, "--batch", true);
      drop_flag(train, "--grad-accum", true);
      for (const std::string& a : {std::string("--batch"), std::to_string(next.batch), std::string("--grad-accum"),
                                   std::to_string(next.accum)})
        train.push_back(a);
    }
    if (find_flag(train, "--resume") < 0) train.push_back("--resume");
    const auto ck = list_checkpoints(ckpt_dir);
    why = strfmt("attempt %d failed: exit %d after %.0f s; resuming from %s", attempt, rc, took,
                 ck.empty() ? "step 0 (no checkpoint yet)" : ck.front().c_str());
    if (next.ranks != shape.ranks)
      why += strfmt("; %d ranks instead of %d, same global batch", next.ranks, shape.ranks);
    shape = next;
  }

  const double wall = since(t_launch);
  const Productive p = productive_time(metrics, start_step, newest_step(ckpt_dir));
  std::printf("launch: summary: %d attempt%s, %d restart%s, wall %.1f s, ", attempt, attempt == 1 ? "" : "s",
              attempt - 1, attempt == 2 ? "" : "s", wall);
  if (p.steps > 0)
    std::printf("productive step time %.1f s (%d steps) = %.1f%% effective training time\n", p.seconds, p.steps,
                100.0 * p.seconds / wall);
  else
    std::printf("effective training time unknown (no completed step in %s)\n", metrics.c_str());
  std::fflush(stdout);
  return rc;
}

}  // namespace mc
