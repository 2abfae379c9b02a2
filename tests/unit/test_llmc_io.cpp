// llm.c model files with hostile headers: every field is bounded and the exact file size is checked
// before anything is allocated, so a header claiming billions of layers or channels is a quick
// UsageError naming the file and the field (not an 18 GB zero fill or std::bad_alloc).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/dtype.h"
#include "core/errors.h"
#include "../gtest_util.h"
#include "model/llmc_io.h"
#include "../test_util.h"

using namespace mc;
namespace fs = std::filesystem;

namespace {

std::string scratch() { return mc::test::test_scratch("llmc"); }

// A header [magic, version, maxT, V, L, NH, C, Vp] followed by `floats` zero floats.
std::string write_model(const std::string& path, std::vector<int32_t> fields, size_t floats) {
  std::vector<int32_t> h(256, 0);
  for (size_t i = 0; i < fields.size(); ++i) h[i] = fields[i];
  std::ofstream o(path, std::ios::binary);
  o.write(reinterpret_cast<const char*>(h.data()), 1024);
  const std::vector<float> z(floats, 0.0f);
  o.write(reinterpret_cast<const char*>(z.data()), std::streamsize(z.size() * sizeof(float)));
  return path;
}

using mc::test::expect_usage;

ModelConfig small() { return test::model_config(16, 50, 2, 2, 8, 64); }

}  // namespace

TEST(LlmcIo, RoundTrip) {
  const std::string d = scratch(), p = d + "/m.bin";
  const ModelConfig c = small();
  std::vector<float> w(make_layout(c).total);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.25f;
  write_llmc_model(p, c, w);
  const LlmcModel m = read_llmc_model(p);
  EXPECT_EQ(m.cfg.channels, 8);
  EXPECT_EQ(m.cfg.padded_vocab_size, 64);
  EXPECT_EQ(m.params, w);
  // Exporting an invalid configuration is refused (never writes what the reader would refuse).
  ModelConfig bad = c;
  bad.num_heads = 3;
  expect_usage([&] { write_llmc_model(d + "/bad.bin", bad, w); }, {"num_heads"});
  EXPECT_FALSE(fs::exists(d + "/bad.bin"));
}

TEST(LlmcIo, HostileHeadersAreRefusedQuicklyWithoutAllocating) {
  const std::string d = scratch();
  // Address space capped at 8 GiB while reading: a layout-sized allocation for the huge headers below
  // would throw bad_alloc (the wrong exception type) instead of the UsageError we want.
  struct rlimit old {};
  ::getrlimit(RLIMIT_AS, &old);
  const auto t0 = std::chrono::steady_clock::now();
  const int M = 20240326;
  struct Case {
    std::vector<int32_t> h;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{M, 3, 1024, 50257, 1000000000, 12, 768, 50304}, "num_layers"},
      {{M, 3, 1024, 50257, 12, 12, 2000000000, 50304}, "channels"},
      {{M, 3, 2000000000, 50257, 12, 12, 768, 50304}, "max_seq_len"},
      {{M, 3, 1024, 50257, 12, 0, 768, 50304}, "num_heads"},
      {{M, 3, 1024, 50257, 12, -12, 768, 50304}, "num_heads"},
      {{M, 3, 1024, 50257, 12, 7, 768, 50304}, "multiple"},
      {{M, 3, 1024, 50304, 12, 12, 768, 50257}, "padded_vocab_size"},
      {{M, 3, 1024, 0, 12, 12, 768, 50304}, "vocab_size"},
      {{M, 3, 1024, 50257, 12, 12, 768, 2000000000}, "padded_vocab_size"},
      {{M, 3, 0, 50257, 12, 12, 768, 50304}, "max_seq_len"},
      // In bounds but far bigger than the file: the size check fires before any allocation.
      {{M, 3, 65536, 65536, 1024, 64, 65536, 131072}, "needs"},
      {{M, 3, 1024, 50257, 12, 12, 768, 50304}, "needs"},
      {{M, 1, 1024, 50257, 12, 12, 768, 50304}, "version 1"},
      {{M, 4, 1024, 50257, 12, 12, 768, 50304}, "version 4"},
      {{M, 5, 1024, 50257, 12, 12, 768, 50304}, "version 5 (bf16) file has"},  // a size, not a version, problem
      {{M, 5, 65536, 65536, 1024, 64, 65536, 131072}, "needs"},
      {{12345, 3, 1024, 50257, 12, 12, 768, 50304}, "not an llm.c model"},
  };
  int k = 0;
  for (const auto& c : cases) {
    const std::string p = write_model(d + "/h" + std::to_string(k++) + ".bin", c.h, 100);
    SCOPED_TRACE(p);
    struct rlimit lim = old;
    lim.rlim_cur = std::min<rlim_t>(old.rlim_cur, rlim_t(8) << 30);  // 8 GiB of address space at most
#ifndef __SANITIZE_ADDRESS__  // AddressSanitizer's shadow memory needs far more address space
    ::setrlimit(RLIMIT_AS, &lim);
#endif
    expect_usage([&] { read_llmc_model(p); }, {"--init-from " + p, c.expect});
    ::setrlimit(RLIMIT_AS, &old);
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  // Short header, trailing bytes, truncated parameters.
  std::ofstream(d + "/short.bin") << "abc";
  expect_usage([&] { read_llmc_model(d + "/short.bin"); }, {d + "/short.bin", "truncated"});
  const ModelConfig s = small();
  const size_t n = make_layout(s).total;
  const std::vector<int32_t> h = {M,           3,          s.max_seq_len,      s.vocab_size, s.num_layers,
                                  s.num_heads, s.channels, s.padded_vocab_size};
  expect_usage([&] { read_llmc_model(write_model(d + "/trail.bin", h, n + 1)); }, {"trail.bin", "trailing"});
  expect_usage([&] { read_llmc_model(write_model(d + "/cut.bin", h, n - 1)); }, {"cut.bin", "truncated"});
  EXPECT_NO_THROW(read_llmc_model(write_model(d + "/ok.bin", h, n)));
}

// ---- bf16 (version 5, what llm.c's train_gpt2.cu writes) --------------------------------------------

// The conversions version 5 files go through (core/dtype.h, shared with the bf16 training path).
TEST(LlmcIo, Bf16Conversions) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  // 1 + 2^-8 is halfway between bf16 1.0 (even) and 1 + 2^-7 (odd): ties to even -> 1.0.
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> up.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie: up
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low 16 bits must not become infinity.
  uint32_t u = 0x7f800001u;
  float f;
  std::memcpy(&f, &u, 4);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
  // Every bf16 value widens and narrows back to itself.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float x = bf16_to_f32(uint16_t(b));
    if (!std::isnan(x)) {
      ASSERT_EQ(f32_to_bf16(x), b);
    }
  }
}

// A version 5 file written by hand, in llm.c's order (wte, wpe, then each kind for all layers, then
// lnf), independent of write_llmc_model: every element's bf16 value encodes its tensor and position.
TEST(LlmcIo, ReadsBf16FileWrittenByHand) {
  const std::string d = scratch(), p = d + "/v5.bin";
  const ModelConfig c = small();
  const size_t C = size_t(c.channels), L = size_t(c.num_layers);
  std::vector<std::pair<std::string, size_t>> order = {{"wte", size_t(c.padded_vocab_size) * C},
                                                       {"wpe", size_t(c.max_seq_len) * C}};
  const std::vector<std::pair<std::string, size_t>> kinds = {
      {"ln1w", C},     {"ln1b", C}, {"qkvw", 3 * C * C}, {"qkvb", 3 * C}, {"attprojw", C * C}, {"attprojb", C},
      {"ln2w", C},     {"ln2b", C}, {"fcw", 4 * C * C},  {"fcb", 4 * C},  {"fcprojw", 4 * C * C}, {"fcprojb", C}};
  for (const auto& [kind, n] : kinds)
    for (size_t l = 0; l < L; ++l) order.emplace_back("h." + std::to_string(l) + "." + kind, n);
  order.emplace_back("lnf.w", C);
  order.emplace_back("lnf.b", C);
  // bf16 bits: 0x3f80 | small mantissa (values in [1, 2)), sign from the tensor index's parity.
  auto bits = [](size_t tensor, size_t i) { return uint16_t((tensor & 1 ? 0x8000 : 0) | 0x3f80 | ((tensor * 7 + i) & 0x7f)); };
  std::vector<int32_t> h(256, 0);
  h[0] = 20240326, h[1] = 5, h[2] = c.max_seq_len, h[3] = c.vocab_size, h[4] = c.num_layers, h[5] = c.num_heads;
  h[6] = c.channels, h[7] = c.padded_vocab_size;
  std::vector<uint16_t> body;
  for (size_t t = 0; t < order.size(); ++t)
    for (size_t i = 0; i < order[t].second; ++i) body.push_back(bits(t, i));
  {
    std::ofstream o(p, std::ios::binary);
    o.write(reinterpret_cast<const char*>(h.data()), 1024);
    o.write(reinterpret_cast<const char*>(body.data()), std::streamsize(body.size() * 2));
  }
  const LlmcModel m = read_llmc_model(p);
  EXPECT_EQ(m.version, 5);
  const ParamLayout lay = make_layout(c);
  ASSERT_EQ(m.params.size(), lay.total);
  ASSERT_EQ(body.size(), lay.total);
  for (size_t t = 0; t < order.size(); ++t) {
    const ParamTensor& pt = lay.find(order[t].first);
    ASSERT_EQ(pt.numel, order[t].second) << order[t].first;
    for (size_t i = 0; i < pt.numel; ++i) {
      const uint32_t u = uint32_t(bits(t, i)) << 16;
      float want;
      std::memcpy(&want, &u, 4);
      ASSERT_EQ(m.params[pt.offset + i], want) << order[t].first << "[" << i << "]";
    }
  }
  // Truncated by one bf16 value, or one trailing: refused, naming the file and the version.
  std::filesystem::resize_file(p, 1024 + body.size() * 2 - 2);
  expect_usage([&] { read_llmc_model(p, "--model-file"); }, {"--model-file " + p, "version 5 (bf16)", "truncated"});
  std::filesystem::resize_file(p, 1024 + body.size() * 2 + 2);
  expect_usage([&] { read_llmc_model(p); }, {p, "trailing"});
  // The fp32 size under a version 5 header is refused too (not read as bf16 garbage).
  std::filesystem::resize_file(p, 1024 + body.size() * 4);
  expect_usage([&] { read_llmc_model(p); }, {p, "needs"});
}

TEST(LlmcIo, Bf16WriteRoundsAndReadsBack) {
  const std::string d = scratch(), p = d + "/w5.bin";
  const ModelConfig c = small();
  std::vector<float> w(make_layout(c).total);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 0.1f;
  write_llmc_model(p, c, w, kLlmcBf16);
  EXPECT_EQ(std::filesystem::file_size(p), 1024 + 2 * w.size());
  EXPECT_EQ(std::filesystem::file_size(p), llmc_model_bytes(c, kLlmcBf16));
  const LlmcModel m = read_llmc_model(p);
  EXPECT_EQ(m.version, kLlmcBf16);
  ASSERT_EQ(m.params.size(), w.size());
  size_t exact = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(m.params[i], bf16_to_f32(f32_to_bf16(w[i])));
    ASSERT_LE(std::fabs(m.params[i] - w[i]), std::fabs(w[i]) * 0x1p-8f);  // half a bf16 ulp at most
    exact += m.params[i] == w[i];
  }
  EXPECT_LT(exact, w.size() / 10);  // it really is rounded: most values change
  // fp32 stays the default and exact.
  write_llmc_model(p, c, w);
  EXPECT_EQ(read_llmc_model(p).params, w);
  EXPECT_EQ(read_llmc_model(p).version, kLlmcFp32);
}

// A NaN or infinite weight is a damaged file (eval printed "val_loss nan" and sample repeated one
// token, both exit 0): refused naming the file, the tensor and the index, in fp32 and bf16 files.
TEST(LlmcIo, NonFiniteWeightsAreRefused) {
  const std::string d = scratch();
  const ModelConfig c = small();
  const ParamLayout lay = make_layout(c);
  for (int version : {kLlmcFp32, kLlmcBf16}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      std::vector<float> w(lay.total, 0.5f);
      w[lay.find("h.1.fcw").offset + 7] = bad;
      const std::string p = d + "/nf" + std::to_string(version) + ".bin";
      write_llmc_model(p, c, w, version);
      expect_usage([&] { read_llmc_model(p, "--model-file"); },
                   {"--model-file " + p, "parameter h.1.fcw[7] is", std::isnan(bad) ? "NaN" : "infinite"});
    }
  }
}
