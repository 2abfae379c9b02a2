// Training-level tests on one rank: checkpoint round trip and corruption detection, bit-exact resume,
// gradient accumulation, llm.c model-file round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../test_util.h"
#include "core/errors.h"
#include "dist/comm.h"
#include "model/llmc_io.h"
#include "ops/cpu/cpu_ops.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace mc;

namespace {
struct RunOut {
  TrainResult res;
  std::vector<float> params;
};
RunOut train_run(const TrainConfig& c) {
  auto ops = make_cpu_ops();
  auto comm = make_single_communicator();
  Trainer t(plan_run(c), *comm, *ops);
  RunOut r;
  r.res = t.run();
  r.params = t.master_params();
  return r;
}
std::vector<double> losses(const TrainResult& r) {
  std::vector<double> v;
  for (const auto& s : r.steps) v.push_back(s.loss);
  return v;
}
class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::scratch_dir("train"));
    data_ = new std::string(test::make_corpus(*dir_));
  }
  static std::string* dir_;
  static std::string* data_;
};
std::string* TrainTest::dir_ = nullptr;
std::string* TrainTest::data_ = nullptr;
}  // namespace

TEST_F(TrainTest, CheckpointRoundTripAndCorruption) {
  const std::string path = *dir_ + "/ck_roundtrip.bin";
  std::vector<float> a(1000), b(37);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i);
  save_checkpoint(path, {{"step", 12}}, {{"a", a.data(), a.size()}, {"b", b.data(), b.size()}});
  LoadedCheckpoint ck = load_checkpoint_file(path);
  EXPECT_EQ(ck.meta.at("step").get<int>(), 12);
  EXPECT_EQ(ck.get("a"), a);
  EXPECT_EQ(ck.get("b"), b);
  EXPECT_THROW(ck.get("c"), UsageError);

  // One flipped bit in the data: the checksum catches it.
  const std::string bad = *dir_ + "/ck_flipped.bin";
  std::system(("cp " + path + " " + bad).c_str());
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(600);
    char ch;
    f.read(&ch, 1);
    ch ^= 0x10;
    f.seekp(600);
    f.write(&ch, 1);
  }
  try {
    load_checkpoint(bad);
    FAIL() << "corruption not detected";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  // Truncated by a crash mid-copy: refused with "truncated".
  const std::string cut = *dir_ + "/ck_cut.bin";
  std::system(("head -c 2000 " + path + " > " + cut).c_str());
  try {
    load_checkpoint(cut);
    FAIL() << "truncation not detected";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_checkpoint(*dir_ + "/nonexistent.bin"), UsageError);
}

TEST_F(TrainTest, ResumeIsBitExact) {
  TrainConfig c = test::tiny_run(*data_, *dir_ + "/ck_full");
  c.steps = 8;
  RunOut full = train_run(c);
  ASSERT_EQ(full.res.steps.size(), 8u);

  TrainConfig first = test::tiny_run(*data_, *dir_ + "/ck_split");
  first.steps = 8;
  first.stop_at = 3;
  RunOut part1 = train_run(first);
  EXPECT_TRUE(part1.res.stopped_early);
  EXPECT_EQ(part1.res.final_step, 3);
  TrainConfig second = first;
  second.stop_at = 0;
  second.resume = true;
  RunOut part2 = train_run(second);
  EXPECT_EQ(part2.res.start_step, 3);
  std::vector<double> joined = losses(part1.res);
  for (double l : losses(part2.res)) joined.push_back(l);
  EXPECT_EQ(joined, losses(full.res)) << "losses of an interrupted and resumed run must equal the uninterrupted run";
  EXPECT_EQ(part2.params, full.params);
}

TEST_F(TrainTest, ResumeSkipsCorruptNewestCheckpoint) {
  TrainConfig c = test::tiny_run(*data_, *dir_ + "/ck_corrupt");
  c.steps = 4;
  c.ckpt_every = 2;
  train_run(c);
  auto files = list_checkpoints(c.ckpt_dir);
  ASSERT_EQ(files.size(), 2u);  // steps 4 and 2
  std::system(("truncate -s 5000 " + files[0]).c_str());
  c.steps = 5;
  c.resume = true;
  RunOut r = train_run(c);
  EXPECT_EQ(r.res.start_step, 2) << "must fall back to the step-2 checkpoint";
  EXPECT_EQ(r.res.final_step, 5);
}

TEST_F(TrainTest, GradAccumulationMatchesLargerBatch) {
  TrainConfig a = test::tiny_run(*data_, "");
  a.batch = 4;
  a.grad_accum = 1;
  TrainConfig b = a;
  b.batch = 2;
  b.grad_accum = 2;
  RunOut ra = train_run(a), rb = train_run(b);
  auto la = losses(ra.res), lb = losses(rb.res);
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-4 * std::fabs(la[i])) << "step " << i + 1;
  // The loss falls on this corpus.
  EXPECT_LT(la.back(), la.front());
}

TEST_F(TrainTest, LlmcModelRoundTripAndInitFrom) {
  TrainConfig c = test::tiny_run(*data_, *dir_ + "/ck_llmc");
  c.steps = 2;
  RunOut r = train_run(c);
  LoadedCheckpoint ck = load_checkpoint(r.res.last_checkpoint);
  ModelConfig mc = model_preset("tiny", 256);
  const std::string file = *dir_ + "/model.bin";
  write_llmc_model(file, mc, ck.get("params"));
  LlmcModel m = read_llmc_model(file);
  EXPECT_EQ(m.cfg.num_layers, mc.num_layers);
  EXPECT_EQ(m.cfg.channels, mc.channels);
  EXPECT_EQ(m.cfg.padded_vocab_size, mc.padded_vocab_size);
  EXPECT_EQ(m.params, ck.get("params"));
  // The file is grouped by kind: its first layer tensor after wte/wpe is layer 0's ln1w, then layer 1's.
  std::ifstream f(file, std::ios::binary);
  f.seekg(256 * 4 + std::streamoff((256 + 128) * 128 + 128) * 4);
  float x;
  f.read(reinterpret_cast<char*>(&x), 4);
  EXPECT_EQ(x, ck.get("params")[make_layout(mc).find("h.1.ln1w").offset]);

  // --init-from starts from those weights exactly.
  TrainConfig c2 = test::tiny_run(*data_, "");
  c2.init_from = file;
  RunPlan p = plan_run(c2);
  EXPECT_EQ(p.init_params, ck.get("params"));
  // Bad files are refused with the path in the message.
  std::ofstream(*dir_ + "/junk.bin") << "not a model";
  c2.init_from = *dir_ + "/junk.bin";
  EXPECT_THROW(plan_run(c2), UsageError);
}

TEST_F(TrainTest, BadConfigurationIsUsageError) {
  TrainConfig c = test::tiny_run(*data_, "");
  c.seq = 4096;
  EXPECT_THROW(plan_run(c), UsageError);
  c = test::tiny_run(*data_, "");
  c.batch = 0;
  EXPECT_THROW(plan_run(c), UsageError);
  c = test::tiny_run(*data_, "");
  c.model = "huge";
  EXPECT_THROW(plan_run(c), UsageError);
  c = test::tiny_run(*data_, "");
  c.data_dir = "/nonexistent/dir";
  EXPECT_THROW(plan_run(c), UsageError);
}
