// Hardware profiles for `minicolossus simulate`: what one device computes, holds and moves, how
// devices are wired (node, NVLink, NICs, fabric), and how often they fail. Built in: this 2-core CPU
// machine (measured), H100 SXM, H200 SXM; a JSON file overrides any field of a base profile.
// Invariant: every field is in SI base units (FLOP/s, bytes, bytes/s, seconds) and validated positive
// (or >= 0 where 0 means "none") when a profile is built or loaded.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mc::sim {

// One kind of link as a collective sees it: per-device bandwidth in one direction, and the latency of
// one algorithm step (one send/receive between neighbours, software included).
struct Link {
  double bw = 0;     // bytes/s
  double alpha = 0;  // seconds
};

// An all-reduce measured inside one node (a bench-allreduce table): where a fitted Link misses real
// behaviour (Open MPI's shared memory slows down 5x above 4 MiB), single-node all-reduces follow these
// points instead, interpolated (Note [Measured curve] in collectives.cpp).
struct MeasuredCurve {
  int ranks = 0;                // ranks of the measurement; 0 = no curve
  double alpha = 0;             // latency per ring step of its fit, to rescale it to other rank counts
  std::vector<double> bytes;    // ascending
  std::vector<double> seconds;  // non-decreasing
};

struct Hardware {
  std::string name;         // "h100", or the JSON file's "name"
  std::string description;  // one line for the report
  // compute, per device
  double peak_flops = 0;    // dense peak used for MFU: bf16 on GPUs, fp32 on the CPU
  double matmul_eff = 0;    // fraction of peak_flops the model's matrix multiplies reach
  double mem_bw = 0;        // device memory bandwidth (HBM or DRAM), bytes/s
  double mem_eff = 0;       // fraction of mem_bw the element-wise kernels reach
  double micro_step_overhead_s = 0;  // fixed cost per micro-step (launches, host work)
  double mem_bytes = 0;     // device memory capacity
  int act_bytes = 2;        // bytes per activation / compute-copy parameter element (2 bf16, 4 fp32)
  // nodes
  int devices_per_node = 8;
  int cores_per_node = 0;   // CPU only: ranks beyond this share cores, compute and communication slow
                            // down by ranks/cores; 0 = not a CPU profile
  double overlap_slowdown = 0;  // compute lost per second of communication overlapped with it (a CPU's
                                // communication thread takes a core; ~0 on GPUs with a copy engine/NCCL)
  double overlap_preempt_s = 0;  // compute lost each time a collective launched during backward finds the
                                 // communication thread idle (a CPU: woken, it preempts the compute thread)
  // network
  Link intra;               // within a node (NVLink through NVSwitch; shared memory on the CPU)
  MeasuredCurve intra_measured;  // when set, single-node collectives follow it instead of intra
  double nvls_bw = 0;       // NVLink SHARP all-reduce bus bandwidth within a node (0: none)
  Link inter;               // between nodes, per device (its NIC); alpha excludes switch hops
  double hop_latency = 0;   // per switch traversed
  int switch_radix = 128;   // ports per switch: sets the number of fat-tree tiers
  std::string topology = "rail";  // "rail": GPU i of every node shares leaf switches (rail-optimised);
                                  // "fat-tree": any node-to-node path climbs the tree
  double collective_launch_s = 0;  // fixed cost per collective call (kernel launch, protocol set-up)
  // failures and checkpoints
  double failures_per_device_hour = 0;
  double ckpt_write_bw = 0;  // bytes/s to storage for the whole job
  double ckpt_read_bw = 0;   // bytes/s from storage for the whole job
  double restart_s = 0;      // detect a failure, reschedule and re-initialise (reading the checkpoint excluded)
};

// Names of the built-in profiles: "cpu", "h100", "h200".
std::vector<std::string> hardware_names();
// A built-in profile; UsageError naming --hardware (and listing the names) for an unknown one.
Hardware builtin_hardware(const std::string& name);
// A built-in name, or a JSON file {"base": "h100", <field>: value, ...} whose fields override the base
// (see hardware_json for the field names and units). UsageError naming the file or --hardware for any
// problem: unreadable, not JSON, unknown field, wrong type, out of range.
Hardware load_hardware(const std::string& name_or_path);
// The profile as JSON with human units (TFLOP/s, GB/s, GiB, microseconds): the same fields and units
// load_hardware accepts.
nlohmann::json hardware_json(const Hardware& hw);

// Failure rate per device-hour derived from Llama 3 (Dubey et al. 2024, "The Llama 3 Herd of Models",
// section 3.3.4): 419 unexpected interruptions in 54 days on 16,384 H100 GPUs.
constexpr double kLlama3FailuresPerGpuHour = 419.0 / (54.0 * 24.0 * 16384.0);

}  // namespace mc::sim
