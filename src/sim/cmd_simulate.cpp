// `minicolossus simulate`: flags, validation, and the report (a table, or JSON with --json) of the model
// in sim/model.h for each GPU count. Runs on one process, no MPI, no device.
// Invariant: bad input of any kind is a UsageError (exit 2, one line naming the flag or file).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/json.h"
#include "sim/model.h"
#include "train/commands.h"

namespace mc {

namespace {
using namespace mc::sim;

std::vector<int> parse_gpus(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MC_REQUIRE(used == item.size() && !item.empty() && v >= 1 && v <= 10000000,
               "--gpus %s: '%s' is not a whole number of GPUs in [1, 10000000]", s.c_str(), item.c_str());
    out.push_back(int(v));
  }
  MC_REQUIRE(!out.empty() && s.back() != ',', "--gpus '%s': expected a comma-separated list such as 1,8,64",
             s.c_str());
  return out;
}

std::string duration(double s) {
  if (!std::isfinite(s)) return "never";
  if (s < 1) return strfmt("%.0f ms", s * 1e3);
  if (s < 120) return strfmt("%.0f s", s);
  if (s < 2 * 3600) return strfmt("%.0f min", s / 60);
  if (s < 2 * 86400) return strfmt("%.1f h", s / 3600);
  if (s < 2 * 365 * 86400.0) return strfmt("%.1f d", s / 86400);
  return strfmt("%.1f y", s / (365 * 86400.0));
}

std::string count(double x) {  // 1234567 -> "1.23M"
  const char* unit[] = {"", "k", "M", "G", "T"};
  int u = 0;
  while (std::fabs(x) >= 1000 && u < 4) x /= 1000, ++u;
  return strfmt(x < 10 && u > 0 ? "%.2f%s" : x < 100 && u > 0 ? "%.1f%s" : "%.0f%s", x, unit[u]);
}

// JSON text that never throws: a file name need not be UTF-8 (invalid bytes become U+FFFD, as in info).
std::string dump(const nlohmann::json& j) { return json_text(j, 2); }

double json_num(double x) { return std::isfinite(x) ? x : -1; }  // JSON has no infinity: -1 = never

// The smallest power of two N where doubling to 2N saves less than 10% of the time to the same loss.
int diminishing_returns(const SimConfig& c, const Hardware& hw) {
  std::vector<int> ns;
  for (int n = 1; n <= (1 << 21); n *= 2) ns.push_back(n);
  const auto rows = simulate(c, hw, ns);
  for (size_t i = 0; i + 1 < rows.size(); ++i)
    if (rows[i + 1].time_to_same_loss_s > 0.9 * rows[i].time_to_same_loss_s) return rows[i].gpus;
  return 0;
}
// All-reduce of 1 KiB to 1 GiB per algorithm: time and bus bandwidth = 2(n-1)/n * bytes / time (nccl-tests).
void print_collectives(const Hardware& hw, const std::vector<int>& gpus, const std::vector<std::string>& notes,
                       bool json) {
  const Algo algos[] = {Algo::Ring, Algo::Tree, Algo::Hier, Algo::Auto};
  nlohmann::json out = {{"hardware", hardware_json(hw)}, {"calibration", notes}, {"rows", nlohmann::json::array()}};
  if (!json) {
    std::printf("# minicolossus simulate --collectives: all-reduce on %s (%s)\n", hw.name.c_str(), hw.description.c_str());
    for (const auto& n : notes) std::printf("# %s\n", n.c_str());
    std::printf("%8s %12s %10s %12s %12s\n", "gpus", "size(B)", "algo", "time(us)", "busbw(GB/s)");
  }
  for (int n : gpus) {
    for (double bytes = 1024; bytes <= 1024.0 * 1024 * 1024; bytes *= 32) {
      for (Algo a : algos) {
        const CollectiveCost cc = all_reduce(hw, bytes, n, a);
        const double busbw = cc.seconds > 0 ? 2.0 * (n - 1) / n * bytes / cc.seconds : 0;
        const std::string name = a == Algo::Auto ? std::string("auto:") + algo_name(cc.algo) : algo_name(a);
        if (json) {
          out["rows"].push_back({{"gpus", n}, {"bytes", bytes}, {"algo", name}, {"us", 1e6 * cc.seconds},
                                 {"busbw_gbs", busbw / 1e9}});
        } else {
          std::printf("%8d %12.0f %10s %12.2f %12.2f\n", n, bytes, name.c_str(), 1e6 * cc.seconds, busbw / 1e9);
        }
      }
    }
  }
  if (json) std::printf("%s\n", dump(out).c_str());
}
}  // namespace

int cmd_simulate(int argc, char** argv) {
  SimConfig c;
  std::string model = "d12", gpus_s = "1,8,64,512,4096,32768,100000,200000", hardware = "h100", grad_dtype = "fp32",
              algo = "auto";
  int vocab = 50257;
  bool no_overlap = false, json = false;
  double failure_rate = -1;
  std::vector<std::string> calib, calib_comm;
  CLI::App app(
      "Predict step time, scaling, memory and goodput of data-parallel training of our GPT-2 on 1 to 200,000 GPUs "
      "(see README: Simulating a cluster).",
      "simulate");
  app.add_option("--model", model, "tiny|d6|d12|d24|d36|d48")->capture_default_str();
  app.add_option("--vocab", vocab, "vocabulary size (GPT-2: 50257)")->capture_default_str();
  app.add_option("--seq", c.T, "tokens per sequence")->capture_default_str();
  app.add_option("--batch", c.B, "sequences per GPU per micro-step")->capture_default_str();
  app.add_option("--grad-accum", c.grad_accum, "micro-steps per optimizer step")->capture_default_str();
  app.add_option("--gpus", gpus_s, "comma-separated GPU counts, one row each")->capture_default_str();
  app.add_option("--hardware", hardware, "cpu|h100|h200, or a JSON file overriding one (README)")->capture_default_str();
  app.add_option("--zero", c.zero, "0|1|2|3: ZeRO stage (the trainer runs 0 and 1)")->capture_default_str();
  app.add_option("--bucket-mb", c.bucket_mb, "gradient bucket size in MiB, as train --bucket-mb")->capture_default_str();
  app.add_flag("--no-overlap", no_overlap, "reduce gradients only after backward, as train --no-overlap");
  app.add_option("--grad-dtype", grad_dtype, "fp32 (the trainer) | bf16: gradient communication")->capture_default_str();
  app.add_option("--algo", algo, "auto|ring|tree|hier: all-reduce algorithm")->capture_default_str();
  app.add_option("--tokens", c.tokens, "training budget in tokens")->capture_default_str();
  app.add_option("--critical-batch", c.critical_batch_tokens, "critical batch in tokens (0: Kaplan et al. 2020)")
      ->capture_default_str();
  app.add_option("--failures-per-gpu-hour", failure_rate, "failure rate (default: the profile's, from Llama 3)");
  app.add_option("--calibrate", calib, "metrics files (train --metrics) of 1-rank runs: calibrate compute");
  app.add_option("--calibrate-comm", calib_comm, "bench-allreduce output files: calibrate the links");
  app.add_flag("--json", json, "print JSON instead of the table");
  bool collectives = false;
  app.add_flag("--collectives", collectives,
               "instead of steps: predicted all-reduce time and bus bandwidth per size and algorithm, for each --gpus "
               "(as nccl-tests or bench-allreduce print them)");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;

  MC_REQUIRE(vocab >= 1 && vocab <= (1 << 24), "--vocab %d: must be in [1, 16777216]", vocab);
  c.model = model_preset(model, vocab);
  c.model_name = model;
  MC_REQUIRE(c.T >= 1 && c.T <= c.model.max_seq_len, "--seq %d: must be in [1, %d] (the context of --model %s)", c.T,
             c.model.max_seq_len, model.c_str());
  MC_REQUIRE(c.B >= 1 && c.B <= 1000000, "--batch %d: must be in [1, 1000000]", c.B);
  MC_REQUIRE(c.grad_accum >= 1 && c.grad_accum <= 1000000, "--grad-accum %d: must be in [1, 1000000]", c.grad_accum);
  MC_REQUIRE(c.zero >= 0 && c.zero <= 3, "--zero %d: must be 0, 1, 2 or 3", c.zero);
  MC_REQUIRE(std::isfinite(c.bucket_mb) && c.bucket_mb >= 0.01 && c.bucket_mb <= 1e6,
             "--bucket-mb %g: must be a number of MiB in [0.01, 1e6]", c.bucket_mb);
  MC_REQUIRE(grad_dtype == "fp32" || grad_dtype == "bf16", "--grad-dtype %s: expected fp32 or bf16", grad_dtype.c_str());
  c.grad_bytes = grad_dtype == "bf16" ? 2 : 4;
  c.algo = parse_algo(algo);
  c.overlap = !no_overlap;
  MC_REQUIRE(std::isfinite(c.tokens) && c.tokens >= 1 && c.tokens <= 1e18, "--tokens %g: must be in [1, 1e18]",
             c.tokens);
  MC_REQUIRE(std::isfinite(c.critical_batch_tokens) && c.critical_batch_tokens >= 0,
             "--critical-batch %g: must be a number of tokens >= 0 (0: from Kaplan et al.)", c.critical_batch_tokens);
  const std::vector<int> gpus = parse_gpus(gpus_s);
  Hardware hw = load_hardware(hardware);
  if (app.count("--failures-per-gpu-hour")) {
    MC_REQUIRE(std::isfinite(failure_rate) && failure_rate >= 0 && failure_rate <= 1,
               "--failures-per-gpu-hour %g: must be in [0, 1]", failure_rate);
    hw.failures_per_device_hour = failure_rate;
  }
  std::vector<std::string> notes;
  // Text from files (a --hardware file's name and description, calibration notes naming files) goes on
  // one line (one_line): the table's comment lines must stay comment lines.
  if (!calib.empty()) notes.push_back(one_line(calibrate_compute(hw, calib)));
  if (!calib_comm.empty()) notes.push_back(one_line(calibrate_comm(hw, calib_comm)));
  hw.name = one_line(hw.name);
  hw.description = one_line(hw.description);

  if (collectives) {
    print_collectives(hw, gpus, notes, json);
    return 0;
  }
  const auto rows = simulate(c, hw, gpus);
  bool any_fits = false;
  for (const auto& r : rows) any_fits = any_fits || r.fits;
  if (!any_fits) {
    const auto& r = rows.front();
    const double gib = 1024.0 * 1024 * 1024;
    throw UsageError(strfmt(
        "--batch %d: does not fit on %s at any --gpus count: %d GPU%s need %.1f GiB per %s (%.1f GiB activations) "
        "of %.1f GiB; lower --batch or --seq, or raise --zero",
        c.B, hw.name.c_str(), r.gpus, r.gpus == 1 ? "" : "s", r.mem.total / gib,
        hw.cores_per_node > 0 ? "rank" : "GPU", r.mem.activations / gib, hw.mem_bytes / gib));
  }
  const double bcrit = c.critical_batch_tokens > 0 ? c.critical_batch_tokens : critical_batch_tokens(c.model);
  const double params = double(make_layout(c.model).total);
  const int knee = diminishing_returns(c, hw);
  const std::string budget = count(c.tokens);

  if (json) {
    nlohmann::json out;
    out["config"] = {{"model", model},        {"params", params},          {"vocab", vocab},
                     {"seq", c.T},            {"batch", c.B},              {"grad_accum", c.grad_accum},
                     {"zero", c.zero},        {"bucket_mb", c.bucket_mb},  {"overlap", c.overlap},
                     {"grad_dtype", grad_dtype}, {"algo", algo},           {"tokens", c.tokens},
                     {"flops_per_token", flops_per_token(c.model, c.T)},  {"critical_batch_tokens", bcrit},
                     {"diminishing_returns_gpus", knee}};
    out["hardware"] = hardware_json(hw);
    out["calibration"] = notes;
    out["rows"] = nlohmann::json::array();
    for (const auto& r : rows) {
      const double gib = 1024.0 * 1024 * 1024;
      out["rows"].push_back({{"gpus", r.gpus},
                             {"nodes", r.nodes},
                             {"step_ms", 1e3 * r.t.step_s},
                             {"compute_ms", 1e3 * r.t.compute_s},
                             {"comm_ms", 1e3 * r.t.comm_s},
                             {"exposed_comm_ms", 1e3 * r.t.exposed_s},
                             {"optimizer_ms", 1e3 * r.t.optimizer_s},
                             {"algo", r.gpus > 1 ? algo_name(r.t.algo) : "none"},
                             {"buckets", r.t.buckets},
                             {"overlapped_buckets", r.t.overlapped_buckets},
                             {"wakeups", r.t.wakeups},
                             {"overlapped_comm_ms", 1e3 * r.t.overlapped_s},
                             {"scaling_efficiency", r.efficiency},
                             {"tokens_per_s", r.tokens_per_s},
                             {"tokens_per_s_per_gpu", r.tokens_per_s_per_gpu},
                             {"mfu", r.mfu},
                             {"mem_gib_per_gpu", r.mem.total / gib},
                             {"fits", r.fits},
                             {"global_batch_tokens", r.global_batch_tokens},
                             {"batch_over_critical", r.batch_over_critical},
                             {"mtbf_h", json_num(r.mtbf_s / 3600)},
                             {"ckpt_write_s", r.ckpt_write_s},
                             {"ckpt_interval_min", json_num(r.ckpt_interval_s / 60)},
                             {"goodput", r.goodput},
                             {"time_to_tokens_h", json_num(r.time_to_tokens_s / 3600)},
                             {"time_to_same_loss_h", json_num(r.time_to_same_loss_s / 3600)}});
    }
    std::printf("%s\n", dump(out).c_str());
    return 0;
  }

  std::printf("# minicolossus simulate: %s (%s params), seq %d, batch %d x grad-accum %d per GPU, ZeRO-%d, %g MiB "
              "buckets, overlap %s, %s gradients, all-reduce %s\n",
              model.c_str(), count(params).c_str(), c.T, c.B, c.grad_accum, c.zero, c.bucket_mb,
              c.overlap ? "on" : "off", grad_dtype.c_str(), algo.c_str());
  std::printf("# hardware %s: %s\n", hw.name.c_str(), hw.description.c_str());
  for (const auto& n : notes) std::printf("# %s\n", n.c_str());
  std::printf("# critical batch %s tokens (Kaplan et al. 2020); %.3g failures per GPU-hour; checkpoint %s written in "
              "%s, restart %s\n",
              count(bcrit).c_str(), hw.failures_per_device_hour, count(12.0 * params).c_str(),
              duration(rows.front().ckpt_write_s).c_str(), duration(rows.front().restart_s).c_str());
  std::printf("%8s %6s %9s %9s %9s %9s %5s %6s %11s %10s %6s %8s %8s %8s %7s %8s %11s %11s\n", "gpus", "nodes",
              "step ms", "compute", "comm", "exposed", "algo", "eff%", "tok/s", "tok/s/GPU", "MFU%", "mem GiB", "MTBF",
              "ckpt int", "goodput", "B/Bcrit", (budget + " tok").c_str(), "same loss");
  for (const auto& r : rows) {
    const double gib = 1024.0 * 1024 * 1024;
    if (!r.fits) {
      std::printf("%8d %6d  does not fit: %.1f GiB per GPU of %.1f GiB\n", r.gpus, r.nodes, r.mem.total / gib,
                  hw.mem_bytes / gib);
      continue;
    }
    std::printf("%8d %6d %9.1f %9.1f %9.1f %9.1f %5s %6.1f %11s %10s %6.1f %8.1f %8s %8s %6.1f%% %8.2f %11s %11s\n",
                r.gpus, r.nodes, 1e3 * r.t.step_s, 1e3 * r.t.compute_s, 1e3 * r.t.comm_s, 1e3 * r.t.exposed_s,
                r.gpus > 1 ? algo_name(r.t.algo) : "-", 100 * r.efficiency, count(r.tokens_per_s).c_str(),
                count(r.tokens_per_s_per_gpu).c_str(), 100 * r.mfu, r.mem.total / gib, duration(r.mtbf_s).c_str(),
                duration(r.ckpt_interval_s).c_str(), 100 * r.goodput, r.batch_over_critical,
                duration(r.time_to_tokens_s).c_str(), duration(r.time_to_same_loss_s).c_str());
  }
  if (knee > 0)
    std::printf("# pure data parallelism stops paying at about %d GPUs: beyond it, doubling the GPUs shortens the time "
                "to the same loss by less than 10%% (global batch %s tokens = %.1f x critical)\n",
                knee, count(double(knee) * c.B * c.T * c.grad_accum).c_str(),
                double(knee) * c.B * c.T * c.grad_accum / bcrit);
  return 0;
}

}  // namespace mc
