// llm.c model files with hostile headers: every field is bounded and the exact file size is checked
// before anything is allocated, so a header claiming billions of layers or channels is a quick
// UsageError naming the file and the field (not an 18 GB zero fill or std::bad_alloc).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "../gtest_util.h"
#include "model/llmc_io.h"

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

ModelConfig small() {
  ModelConfig c;
  c.max_seq_len = 16;
  c.vocab_size = 50;
  c.padded_vocab_size = 64;
  c.num_layers = 2;
  c.num_heads = 2;
  c.channels = 8;
  return c;
}

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
      {{M, 5, 1024, 50257, 12, 12, 768, 50304}, "version 5"},
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
