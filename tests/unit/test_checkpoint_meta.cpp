// Checkpoints whose checksum is valid but whose metadata is hostile: load_checkpoint must refuse
// each with a one-line UsageError naming the file (never a crash, a bare JSON exception or a huge
// allocation). Files are written with save_checkpoint / write_checkpoint_raw, so the checksum is
// always right and only the metadata is wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/errors.h"
#include "core/files.h"
#include "../gtest_util.h"
#include "model/llmc_io.h"
#include "train/checkpoint.h"
#include "../test_util.h"

using namespace mc;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string scratch() { return mc::test::test_scratch("ckmeta"); }

ModelConfig small_model() { return test::model_config(8, 20, 2, 2, 8, 32); }

// The metadata the trainer writes (src/train/trainer.cpp), for small_model().
json good_meta() {
  return {{"format", "minicolossus-checkpoint"},
          {"version", 1},
          {"model", model_json(small_model())},
          {"tokenizer", "byte"},
          {"data_dir", "/tmp/data"},
          {"step", 5},
          {"loader_pos", 40},
          {"adam_t", 5},
          {"seed", 1337},
          {"seq", 8},
          {"global_batch", 8},
          {"world_size", 2}};
}

size_t nparams() { return make_layout(small_model()).total; }

// Writes a checkpoint with `meta` and the three tensors of sizes n_params, n_m, n_v.
std::string write(const std::string& path, const json& meta, size_t np, size_t nm, size_t nv) {
  std::vector<float> p(np, 0.5f), m(nm, 0.0f), v(nv, 0.0f);
  save_checkpoint(path, meta, {{"params", p.data(), np}, {"adam_m", m.data(), nm}, {"adam_v", v.data(), nv}});
  return path;
}

using mc::test::expect_usage;

}  // namespace

TEST(CheckpointMeta, ValidCheckpointLoadsWithItsModel) {
  const std::string d = scratch();
  const size_t n = nparams();
  const std::string p = write(d + "/good.bin", good_meta(), n, n, n);
  LoadedCheckpoint ck = load_checkpoint(p);
  const ModelConfig c = checkpoint_model(ck);
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.padded_vocab_size, 32);
  EXPECT_EQ(ck.get("params").size(), n);
  EXPECT_EQ(validate_model_config(c, "x"), n);
}

// Each mutation of otherwise good metadata, with a valid checksum: refused naming the file and the key.
TEST(CheckpointMeta, EveryBadFieldIsRefused) {
  const std::string d = scratch();
  const size_t n = nparams();
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"zero heads", [](json& j) { j["model"]["num_heads"] = 0; }, "num_heads"},
      {"negative heads", [](json& j) { j["model"]["num_heads"] = -4; }, "num_heads"},
      {"vocab > padded", [](json& j) { j["model"]["vocab_size"] = 40; }, "padded_vocab_size"},
      {"channels % heads", [](json& j) { j["model"]["num_heads"] = 3; }, "multiple"},
      {"huge layers", [](json& j) { j["model"]["num_layers"] = 1000000000; }, "num_layers"},
      {"huge channels", [](json& j) { j["model"]["channels"] = 2000000000; }, "channels"},
      {"zero seq len", [](json& j) { j["model"]["max_seq_len"] = 0; }, "max_seq_len"},
      {"model field too big for int", [](json& j) { j["model"]["channels"] = 1ll << 40; }, "channels"},
      {"model field a string", [](json& j) { j["model"]["channels"] = "8"; }, "channels"},
      {"model not an object", [](json& j) { j["model"] = json::array(); }, "model"},
      {"negative step", [](json& j) { j["step"] = -1; }, "step"},
      {"step 2^31", [](json& j) { j["step"] = 1ll << 31; }, "step"},
      {"step 2^31-1", [](json& j) { j["step"] = (1ll << 31) - 1; }, "step"},
      {"step float", [](json& j) { j["step"] = 1.5; }, "step"},
      {"step string", [](json& j) { j["step"] = "5"; }, "step"},
      {"negative loader_pos", [](json& j) { j["loader_pos"] = -3; }, "loader_pos"},
      {"negative adam_t", [](json& j) { j["adam_t"] = -1; }, "adam_t"},
      {"zero seq", [](json& j) { j["seq"] = 0; }, "seq"},
      {"seq beyond context", [](json& j) { j["seq"] = 9; }, "seq"},
      {"zero global batch", [](json& j) { j["global_batch"] = 0; }, "global_batch"},
      {"zero world size", [](json& j) { j["world_size"] = 0; }, "world_size"},
      {"tokenizer number", [](json& j) { j["tokenizer"] = 5; }, "tokenizer"},
      {"tokenizer empty", [](json& j) { j["tokenizer"] = ""; }, "tokenizer"},
      {"tokenizer with a newline", [](json& j) { j["tokenizer"] = "byte\nx"; }, "tokenizer"},
      {"data_dir number", [](json& j) { j["data_dir"] = 3; }, "data_dir"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    json m = good_meta();
    c.mutate(m);
    const std::string p = write(d + "/bad.bin", m, n, n, n);
    expect_usage([&] { load_checkpoint(p); }, {p, c.expect});
  }
  for (const char* key :
       {"model", "step", "loader_pos", "adam_t", "seq", "global_batch", "world_size", "tokenizer", "data_dir"}) {
    SCOPED_TRACE(key);
    json m = good_meta();
    m.erase(key);
    const std::string p = write(d + "/missing.bin", m, n, n, n);
    expect_usage([&] { load_checkpoint(p); }, {p, std::string("no \"") + key + "\""});
  }
  for (const char* key : {"max_seq_len", "vocab_size", "padded_vocab_size", "num_layers", "num_heads", "channels"}) {
    SCOPED_TRACE(key);
    json m = good_meta();
    m["model"].erase(key);
    const std::string p = write(d + "/missing_model.bin", m, n, n, n);
    expect_usage([&] { load_checkpoint(p); }, {p, key});
  }
  // Not an object at all.
  {
    std::vector<float> x(4);
    write_checkpoint_raw(d + "/array.bin", "[1,2,3]", {{"x", x.data(), 4}});
    expect_usage([&] { load_checkpoint(d + "/array.bin"); }, {d + "/array.bin", "not a JSON object"});
  }
}

TEST(CheckpointMeta, TensorSizesMustMatchTheModel) {
  const std::string d = scratch();
  const size_t n = nparams();
  expect_usage([&] { load_checkpoint(write(d + "/a.bin", good_meta(), n - 1, n, n)); }, {d + "/a.bin", "params"});
  expect_usage([&] { load_checkpoint(write(d + "/b.bin", good_meta(), n, n, n + 7)); }, {d + "/b.bin", "adam_v"});
  std::vector<float> p(n);
  save_checkpoint(d + "/c.bin", good_meta(), {{"params", p.data(), n}, {"adam_m", p.data(), n}});
  expect_usage([&] { load_checkpoint(d + "/c.bin"); }, {d + "/c.bin", "adam_v"});
  // The container alone still loads (tools, tests): only load_checkpoint insists on a training checkpoint.
  EXPECT_NO_THROW(load_checkpoint_file(d + "/c.bin"));
  // A tensor named twice (the second could be read by one user, the first by another).
  save_checkpoint(d + "/twice.bin", good_meta(),
                  {{"params", p.data(), n}, {"adam_m", p.data(), n}, {"adam_v", p.data(), n}, {"params", p.data(), n}});
  expect_usage([&] { load_checkpoint(d + "/twice.bin"); }, {d + "/twice.bin", "more than once"});
  // A long hostile value is cut in the one-line message.
  json m = good_meta();
  m["tokenizer"] = std::string(5000, 'x') + "\n";
  save_checkpoint(d + "/long.bin", m, {{"params", p.data(), n}, {"adam_m", p.data(), n}, {"adam_v", p.data(), n}});
  try {
    load_checkpoint(d + "/long.bin");
    ADD_FAILURE() << "long tokenizer accepted";
  } catch (const UsageError& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u) << e.what();
  }
}

// Sizes that would overflow or demand huge allocations are refused against the file size, at once.
TEST(CheckpointMeta, HostileTensorTableIsRefusedBeforeAllocating) {
  const std::string d = scratch();
  const auto t0 = std::chrono::steady_clock::now();
  auto raw = [&](const std::string& name, const std::string& tensors) {
    json m = good_meta();
    const std::string js = m.dump().substr(0, m.dump().size() - 1) + ",\"tensors\":" + tensors + "}";
    write_checkpoint_raw(d + "/" + name, js, {});
    return d + "/" + name;
  };
  // 2^62 floats: 4 * numel wraps to 0 in size_t.
  std::string p = raw("wrap.bin", R"([{"name":"params","dtype":"f32","numel":4611686018427387904}])");
  expect_usage([&] { load_checkpoint(p); }, {p, "does not fit"});
  p = raw("sum.bin",
          R"([{"name":"params","numel":9223372036854775807},{"name":"adam_m","numel":9223372036854775807}])");
  expect_usage([&] { load_checkpoint(p); }, {p, "does not fit"});
  p = raw("negative.bin", R"([{"name":"params","numel":-1}])");
  expect_usage([&] { load_checkpoint(p); }, {p, "numel"});
  p = raw("noname.bin", R"([{"numel":1}])");
  expect_usage([&] { load_checkpoint(p); }, {p, "name"});
  p = raw("notarray.bin", R"({"params":1})");
  expect_usage([&] { load_checkpoint(p); }, {p, "tensors"});
  p = raw("dtype.bin", R"([{"name":"params","dtype":"bf16","numel":0}])");
  expect_usage([&] { load_checkpoint(p); }, {p, "dtype"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

TEST(CheckpointMeta, ExistingChecksAreStillThere) {
  const std::string d = scratch();
  const size_t n = nparams();
  const std::string p = write(d + "/good.bin", good_meta(), n, n, n);
  fs::copy_file(p, d + "/flip.bin");
  {
    std::FILE* f = std::fopen((d + "/flip.bin").c_str(), "r+b");
    std::fseek(f, 700, SEEK_SET);
    std::fputc(0x55, f);
    std::fclose(f);
  }
  expect_usage([&] { load_checkpoint(d + "/flip.bin"); }, {d + "/flip.bin", "checksum"});
  fs::resize_file(d + "/flip.bin", 900);
  expect_usage([&] { load_checkpoint(d + "/flip.bin"); }, {d + "/flip.bin", "truncated"});
  expect_usage([&] { load_checkpoint(d + "/missing.bin"); }, {d + "/missing.bin", "cannot open"});
  expect_usage([&] { load_checkpoint(d); }, {d, "directory"});
}

// checkpoint_checksum (what `info` shows) agrees with what load_checkpoint verifies: equal on a good file,
// different after one data byte flips (which load_checkpoint refuses), and a missing trailer is refused.
TEST(CheckpointMeta, ChecksumStreamsTheSameCrcLoadVerifies) {
  const std::string d = scratch();
  const size_t n = nparams();
  const std::string p = write(d + "/good.bin", good_meta(), n, n, n);
  const CheckpointChecksum good = checkpoint_checksum(p);
  EXPECT_EQ(good.stored, good.computed);
  std::string bytes = mc::read_input_file(p, "");
  bytes[bytes.size() - 40] ^= 1;  // inside the last tensor
  std::ofstream(d + "/flip.bin", std::ios::binary) << bytes;
  const CheckpointChecksum flip = checkpoint_checksum(d + "/flip.bin");
  EXPECT_EQ(flip.stored, good.stored);
  EXPECT_NE(flip.computed, flip.stored);
  expect_usage([&] { load_checkpoint(d + "/flip.bin"); }, {"flip.bin", "checksum"});
  std::ofstream(d + "/cut.bin", std::ios::binary) << bytes.substr(0, bytes.size() - 8);
  expect_usage([&] { checkpoint_checksum(d + "/cut.bin"); }, {"cut.bin"});
}

// Note [Pruning]: --ckpt-keep ranks only the checkpoints at or below the step just saved. A newer one
// (skipped by --resume as corrupt, or left by an earlier run) used to count as the newest, so --ckpt-keep 1
// deleted the checkpoint just written and kept the unusable one.
TEST(CheckpointPrune, KeepsTheNewestUpToTheCurrentStepAndNothingNewer) {
  const std::string dir = scratch() + "/prune";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int step : {1, 2, 3, 5, 9}) std::ofstream(checkpoint_path(dir, step)) << "x";
  auto steps = [&] {
    std::vector<int> out;
    for (const auto& p : list_checkpoints(dir)) out.push_back(std::stoi(p.substr(p.rfind("ckpt_") + 5)));
    return out;
  };
  prune_checkpoints(dir, 1, 5);  // 9 is newer than the step just saved: not ours to judge
  EXPECT_EQ(steps(), (std::vector<int>{9, 5}));
  std::ofstream(checkpoint_path(dir, 6)) << "x";
  std::ofstream(checkpoint_path(dir, 7)) << "x";
  prune_checkpoints(dir, 2, 7);
  EXPECT_EQ(steps(), (std::vector<int>{9, 7, 6}));
  prune_checkpoints(dir, 0, 7);  // 0 keeps all
  EXPECT_EQ(steps(), (std::vector<int>{9, 7, 6}));
  prune_checkpoints(dir, 1, 9);  // the run reached 9 and overwrote it: now it is the newest of the run
  EXPECT_EQ(steps(), (std::vector<int>{9}));
}
