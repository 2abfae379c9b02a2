// Writes the seed corpora of the fuzz targets with the project's own writers (prepare_text,
// write_shard, write_llmc_model, save_checkpoint), so the seeds are exactly what the readers meet in
// use. Usage: make_seeds OUT_DIR [REAL_CHECKPOINT]; writes OUT_DIR/<target>/<seed>. Given a checkpoint
// written by `minicolossus train`, its metadata keys are kept (with a tiny model), so the metadata
// seeds carry everything the trainer writes.
// Invariant: every seed is small (a model of a few thousand parameters): the corpora live in git.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data.h"
#include "model/gpt2.h"
#include "model/llmc_io.h"
#include "model/safetensors.h"
#include "train/checkpoint.h"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR [REAL_CHECKPOINT]\n");
    return 2;
  }
  const std::string out = argv[1];
  for (const char* t : {"", "/shard", "/llmc_model", "/checkpoint", "/checkpoint_meta", "/tokenizer_json", "/safetensors", "/tmp"})
    ::mkdir((out + t).c_str(), 0755);

  // Shards and tokenizer.json: `prepare` on a small text, plus a GPT-2-range shard.
  std::string text;
  for (int i = 0; text.size() < 4000; ++i) text += "verse " + std::to_string(i) + ": and the loss went down.\n";
  put(out + "/tmp/corpus.txt", text);
  mc::prepare_text(out + "/tmp/corpus.txt", out + "/tmp/data", "byte", 0.1);
  put(out + "/shard/prepared_train", slurp(out + "/tmp/data/train_000000.bin"));
  put(out + "/shard/prepared_val", slurp(out + "/tmp/data/val_000000.bin"));
  put(out + "/tokenizer_json/prepared", slurp(out + "/tmp/data/tokenizer.json"));
  put(out + "/tokenizer_json/gpt2", R"({"tokenizer": "gpt2", "vocab_size": 50257})");
  std::vector<uint16_t> gpt2_tokens(200);
  for (size_t i = 0; i < gpt2_tokens.size(); ++i) gpt2_tokens[i] = uint16_t(50256 - i * 211 % 50257);
  mc::write_shard(out + "/tmp/gpt2.bin", gpt2_tokens);
  put(out + "/shard/gpt2_tokens", slurp(out + "/tmp/gpt2.bin"));

  // A tiny model: llm.c file and checkpoint.
  mc::ModelConfig c;
  c.max_seq_len = 8;
  c.vocab_size = 256;
  c.padded_vocab_size = mc::pad_vocab(256);
  c.num_layers = 1;
  c.num_heads = 2;
  c.channels = 8;
  const mc::ParamLayout lay = mc::make_layout(c);
  const std::vector<float> params = mc::gpt2_init(c, lay, 1);
  mc::write_llmc_model(out + "/llmc_model/tiny_L1", c, params);
  mc::ModelConfig c2 = c;
  c2.num_layers = 2;
  c2.vocab_size = 100;
  c2.padded_vocab_size = 128;
  const std::vector<float> params2 = mc::gpt2_init(c2, mc::make_layout(c2), 2);
  mc::write_llmc_model(out + "/llmc_model/tiny_L2_V100", c2, params2);
  // The same models as Hugging Face safetensors files (export --format hf).
  for (const auto& [name, cfg, p] : {std::tuple{"tiny_L1", c, &params}, std::tuple{"tiny_L2_V100", c2, &params2}}) {
    std::vector<std::vector<float>> storage;
    mc::write_safetensors(out + "/safetensors/" + name, mc::hf_gpt2_tensors(cfg, *p, &storage),
                          {{"format", "pt"}});
  }

  // The metadata the trainer writes (src/train/trainer.cpp), with the tiny model.
  nlohmann::json meta = {{"format", "minicolossus-checkpoint"}, {"version", 1}, {"git", "seed"},
                         {"tokenizer", "byte"}, {"data_dir", "data"}, {"step", 2}, {"loader_pos", 16},
                         {"adam_t", 2}, {"seed", 1337}, {"seq", 8}, {"global_batch", 8}, {"world_size", 1},
                         {"config", nlohmann::json::object()}};
  if (argc > 2) meta = mc::read_checkpoint_meta(argv[2]);  // a real one: all its keys, incl. the run config
  meta["model"] = mc::model_json(c);
  meta["seq"] = c.max_seq_len;
  meta.erase("tensors");
  std::vector<float> m(params.size(), 0.001f), v(params.size(), 1e-6f);
  const std::string ck = out + "/checkpoint/tiny";
  mc::save_checkpoint(ck, meta, {{"params", params.data(), params.size()}, {"adam_m", m.data(), m.size()},
                                 {"adam_v", v.data(), v.size()}});
  // The metadata seed is the JSON exactly as stored in that file (tensors list included).
  put(out + "/checkpoint_meta/tiny", mc::read_checkpoint_meta(ck).dump());
  put(out + "/checkpoint_meta/tiny_pretty", mc::read_checkpoint_meta(ck).dump(1));
  std::printf("seeds written under %s\n", out.c_str());
  return 0;
}
