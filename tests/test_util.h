// Helpers shared by the unit and MPI tests: a small deterministic corpus prepared into a data
// directory, scratch directories, and a quiet tiny training configuration.
#pragma once
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/config.h"
#include "core/rng.h"
#include "data/data.h"
#include "model/gpt2.h"

namespace mc::test {

// A fresh empty directory under /tmp, unique to this process and tag.
inline std::string scratch_dir(const std::string& tag) {
  std::string d = "/tmp/mc_test_" + tag + "_" + std::to_string(::getpid());
  std::string cmd = "rm -rf '" + d + "' && mkdir -p '" + d + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("cannot create " + d);
  return d;
}

// Prepares a byte-level data directory from ~60 KB of pseudo-English text (deterministic).
inline std::string make_corpus(const std::string& dir) {
  static const char* words[] = {"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was",
                                "with", "be", "by", "on", "not", "he", "I", "this", "are", "or", "his", "from"};
  Rng r(42);
  std::string text;
  while (text.size() < 60000) {
    text += words[r.next() % 24];
    text += (r.next() % 11 == 0) ? ".\n" : " ";
  }
  const std::string in = dir + "/corpus.txt";
  std::ofstream(in) << text;
  prepare_text(in, dir + "/data", "byte", 0.1);
  return dir + "/data";
}

// A model shape for tests: maxT, V, L, NH, C, and Vp (default: V padded as the presets pad it).
inline ModelConfig model_config(int maxT, int V, int L, int NH, int C, int Vp = 0) {
  ModelConfig c;
  c.max_seq_len = maxT;
  c.vocab_size = V;
  c.padded_vocab_size = Vp > 0 ? Vp : pad_vocab(V);
  c.num_layers = L;
  c.num_heads = NH;
  c.channels = C;
  return c;
}

// A very small, quick model run on that corpus.
inline TrainConfig tiny_run(const std::string& data, const std::string& ckpt_dir) {
  TrainConfig c;
  c.data_dir = data;
  c.model = "tiny";
  c.batch = 2;
  c.seq = 32;
  c.steps = 6;
  c.lr = 1e-3f;
  c.warmup = 2;
  c.ckpt_dir = ckpt_dir;
  c.val_every = 0;
  c.val_seqs = 8;
  c.quiet = true;
  return c;
}

}  // namespace mc::test
