// Tests of the hardware profiles of `minicolossus simulate` (src/sim/hardware.cpp): the built-ins load and hold their
// documented values, JSON files override single fields, hardware_json round-trips, and every bad file is a UsageError
// naming it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "../gtest_util.h"
#include "sim/hardware.h"

namespace mc::sim {
namespace {

using mc::test::expect_usage;
using mc::test::test_scratch;

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}

// Every field compared; doubles to the last few bits (the unit conversions of the JSON form are one multiply and
// one divide each way).
void expect_same(const Hardware& a, const Hardware& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.description, b.description);
  EXPECT_DOUBLE_EQ(a.peak_flops, b.peak_flops);
  EXPECT_DOUBLE_EQ(a.matmul_eff, b.matmul_eff);
  EXPECT_DOUBLE_EQ(a.mem_bw, b.mem_bw);
  EXPECT_DOUBLE_EQ(a.mem_eff, b.mem_eff);
  EXPECT_DOUBLE_EQ(a.micro_step_overhead_s, b.micro_step_overhead_s);
  EXPECT_DOUBLE_EQ(a.mem_bytes, b.mem_bytes);
  EXPECT_EQ(a.act_bytes, b.act_bytes);
  EXPECT_EQ(a.devices_per_node, b.devices_per_node);
  EXPECT_EQ(a.cores_per_node, b.cores_per_node);
  EXPECT_DOUBLE_EQ(a.overlap_slowdown, b.overlap_slowdown);
  EXPECT_DOUBLE_EQ(a.intra.bw, b.intra.bw);
  EXPECT_DOUBLE_EQ(a.intra.alpha, b.intra.alpha);
  EXPECT_DOUBLE_EQ(a.nvls_bw, b.nvls_bw);
  EXPECT_DOUBLE_EQ(a.inter.bw, b.inter.bw);
  EXPECT_DOUBLE_EQ(a.inter.alpha, b.inter.alpha);
  EXPECT_DOUBLE_EQ(a.hop_latency, b.hop_latency);
  EXPECT_EQ(a.switch_radix, b.switch_radix);
  EXPECT_EQ(a.topology, b.topology);
  EXPECT_DOUBLE_EQ(a.collective_launch_s, b.collective_launch_s);
  EXPECT_DOUBLE_EQ(a.failures_per_device_hour, b.failures_per_device_hour);
  EXPECT_DOUBLE_EQ(a.ckpt_write_bw, b.ckpt_write_bw);
  EXPECT_DOUBLE_EQ(a.ckpt_read_bw, b.ckpt_read_bw);
  EXPECT_DOUBLE_EQ(a.restart_s, b.restart_s);
}

TEST(SimHardware, BuiltinsLoad) {
  ASSERT_EQ(hardware_names(), (std::vector<std::string>{"cpu", "h100", "h200"}));
  for (const auto& n : hardware_names()) {
    const Hardware h = load_hardware(n);
    EXPECT_EQ(h.name, n);
    EXPECT_FALSE(h.description.empty());
    EXPECT_EQ(h.description.find('\n'), std::string::npos);
    EXPECT_GT(h.peak_flops * h.matmul_eff, 0);
    EXPECT_GT(h.mem_bw * h.mem_eff, 0);
    EXPECT_EQ(h.failures_per_device_hour, kLlama3FailuresPerGpuHour);
    expect_same(h, builtin_hardware(n));
  }
  const Hardware h100 = builtin_hardware("h100"), h200 = builtin_hardware("h200"), cpu = builtin_hardware("cpu");
  EXPECT_EQ(h100.peak_flops, 989e12);
  EXPECT_EQ(h100.intra.bw, 370e9);
  EXPECT_EQ(h100.nvls_bw, 480e9);
  EXPECT_EQ(h100.devices_per_node, 8);
  EXPECT_EQ(h100.act_bytes, 2);
  EXPECT_EQ(h100.cores_per_node, 0);
  EXPECT_EQ(h200.peak_flops, h100.peak_flops);
  EXPECT_EQ(h200.mem_bw, 4.8e12);
  EXPECT_GT(h200.mem_bytes, 140e9);
  EXPECT_LT(h100.mem_bytes, 80.0 * (1 << 30));
  EXPECT_EQ(cpu.devices_per_node, 2);
  EXPECT_EQ(cpu.cores_per_node, 2);
  EXPECT_EQ(cpu.act_bytes, 4);
  EXPECT_EQ(cpu.nvls_bw, 0);
  // Llama 3: 419 interruptions in 54 days on 16,384 GPUs, ~2e-5 per GPU-hour
  EXPECT_NEAR(kLlama3FailuresPerGpuHour, 1.973e-5, 0.001e-5);
}

TEST(SimHardware, UnknownNameIsAUsageError) {
  expect_usage([] { builtin_hardware("a100"); }, {"--hardware", "a100", "cpu, h100, h200"});
  expect_usage([] { load_hardware("a100"); },
               {"--hardware a100", "not a built-in profile (cpu, h100, h200) nor a JSON file"});
  expect_usage([] { load_hardware(""); }, {"--hardware", "not a built-in profile"});
}

TEST(SimHardware, JsonOverridesOnlyTheGivenField) {
  const std::string d = test_scratch("sim_hw");
  const Hardware base = builtin_hardware("h100");
  Hardware h = load_hardware(write_file(d, "fast.json", R"({"inter_bw_gbs": 100})"));
  EXPECT_EQ(h.inter.bw, 100e9);
  EXPECT_EQ(h.name, "fast");  // named after the file
  Hardware want = base;
  want.inter.bw = 100e9;
  want.name = h.name;
  want.description = h.description;
  expect_same(h, want);
  // another base, several fields, units
  h = load_hardware(write_file(d, "b.json",
                               R"({"base": "h200", "name": "mine", "mem_gib": 96, "intra_alpha_us": 2.5,
                                   "topology": "fat-tree", "devices_per_node": 4, "peak_tflops": 1000})"));
  want = builtin_hardware("h200");
  want.name = "mine";
  want.description = h.description;
  want.mem_bytes = 96.0 * (1 << 30);
  want.intra.alpha = 2.5e-6;
  want.topology = "fat-tree";
  want.devices_per_node = 4;
  want.peak_flops = 1000e12;
  expect_same(h, want);
  // an empty object is the h100
  h = load_hardware(write_file(d, "empty.json", "{}"));
  want = base;
  want.name = "empty";
  want.description = h.description;
  expect_same(h, want);
}

TEST(SimHardware, JsonRoundTrip) {
  const std::string d = test_scratch("sim_hw");
  Hardware odd = builtin_hardware("h100");  // values that are not round numbers in the JSON units
  odd.name = "odd";
  odd.peak_flops = 123456789012345.0;
  odd.intra.alpha = 1.0 / 3.0 * 1e-6;
  odd.mem_bytes = 12345678901.0;
  odd.hop_latency = 0;
  odd.topology = "fat-tree";
  for (Hardware h : {builtin_hardware("cpu"), builtin_hardware("h100"), builtin_hardware("h200"), odd}) {
    SCOPED_TRACE(h.name);
    const nlohmann::json j = hardware_json(h);
    for (const char* k : {"peak_tflops", "mem_bw_gbs", "mem_gib", "intra_bw_gbs", "intra_alpha_us", "nvls_bw_gbs",
                          "inter_alpha_us", "collective_launch_us", "ckpt_write_gbs", "restart_s", "topology"})
      EXPECT_TRUE(j.contains(k)) << k;
    const Hardware back = load_hardware(write_file(d, h.name + ".json", j.dump(2)));
    expect_same(back, h);
    EXPECT_EQ(hardware_json(back), j);
  }
  // human units
  const nlohmann::json j = hardware_json(builtin_hardware("h100"));
  EXPECT_DOUBLE_EQ(j["peak_tflops"].get<double>(), 989);
  EXPECT_DOUBLE_EQ(j["intra_bw_gbs"].get<double>(), 370);
  EXPECT_DOUBLE_EQ(j["intra_alpha_us"].get<double>(), 0.6);
  EXPECT_EQ(j["devices_per_node"].get<int>(), 8);
}

TEST(SimHardware, BadFilesAreUsageErrorsNamingTheFile) {
  const std::string d = test_scratch("sim_hw");
  struct Case {
    const char* name;
    const char* text;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {"syntax.json", R"({"peak_tflops": 1000,})", {"not valid JSON", "line 1"}},
      {"empty.json", "", {"not valid JSON"}},
      {"array.json", "[1, 2]", {"JSON object"}},
      {"unknown.json", R"({"peak_tflops": 1000, "warp_speed": 9})", {"unknown field 'warp_speed'", "known: base,"}},
      {"negative.json", R"({"inter_bw_gbs": -5})", {"'inter_bw_gbs'", "positive"}},
      {"zero.json", R"({"mem_gib": 0})", {"'mem_gib'", "positive"}},
      {"neglat.json", R"({"hop_latency_us": -1})", {"'hop_latency_us'", "negative"}},
      {"string.json", R"({"peak_tflops": "fast"})", {"'peak_tflops'", "must be a number"}},
      {"bool.json", R"({"matmul_eff": true})", {"'matmul_eff'", "must be a number"}},
      {"eff.json", R"({"matmul_eff": 1.5})", {"'matmul_eff'", "(0, 1]"}},
      {"act.json", R"({"act_bytes": 3})", {"'act_bytes'", "2 (bf16) or 4"}},
      {"frac.json", R"({"devices_per_node": 2.5})", {"'devices_per_node'", "integer"}},
      {"dpn.json", R"({"devices_per_node": 0})", {"'devices_per_node'"}},
      {"radix.json", R"({"switch_radix": 2})", {"'switch_radix'"}},
      {"topo.json", R"({"topology": "torus"})", {"'topology'", "fat-tree"}},
      {"topotype.json", R"({"topology": 3})", {"'topology'", "string"}},
      {"name.json", R"({"name": ""})", {"'name'", "empty"}},
      {"base.json", R"({"base": "tpu"})", {"'base'", "tpu"}},
      {"huge.json", R"({"peak_tflops": 1e400})", {"not valid JSON"}},  // the parser refuses to overflow to inf
      {"overflow.json", R"({"peak_tflops": 1e300})", {"'peak_tflops'", "out of range"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = write_file(d, c.name, c.text);
    std::vector<std::string> says = c.says;
    expect_usage([&] { load_hardware(p); }, {"--hardware " + p, says.size() > 0 ? says[0] : "",
                                             says.size() > 1 ? says[1] : ""});
  }
  // not regular files
  expect_usage([&] { load_hardware(d); }, {"--hardware", d, "directory"});
  const std::string fifo = d + "/fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_usage([&] { load_hardware(fifo); }, {"--hardware", fifo, "FIFO"});
  expect_usage([&] { load_hardware(d + "/missing.json"); }, {"--hardware", d + "/missing.json", "nor a JSON file"});
}

}  // namespace
}  // namespace mc::sim
