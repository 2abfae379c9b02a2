// Checkpoint files: one self-describing file per checkpoint, independent of the world size that
// wrote it. Layout: "MCCKPT01", uint64 JSON length, JSON metadata (model config, step, loader
// position, seed, optimizer step, run config), zero padding to 64 bytes, the fp32 tensors named in
// the JSON (master parameters, AdamW m and v, in ParamLayout order), then a trailer: uint32 CRC-32 of
// every byte before it, uint32 0, "MCCKEND1". Written to a temporary name, fsynced, renamed: a crash
// never leaves a half-written file under a checkpoint's name.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gpt2.h"

namespace mc {

struct CheckpointTensor {
  std::string name;
  const float* data;  // host memory
  size_t numel;
};

// Writes path atomically (temp + fsync + rename + directory fsync). Throws RuntimeError on I/O error.
void save_checkpoint(const std::string& path, const nlohmann::json& meta,
                     const std::vector<CheckpointTensor>& tensors);

// Writes a checkpoint whose metadata is exactly the JSON text `meta_json` (its "tensors" array must
// describe `tensors`; nothing is checked). save_checkpoint uses it; tests use it to craft files with
// a valid checksum and hostile metadata.
void write_checkpoint_raw(const std::string& path, const std::string& meta_json,
                          const std::vector<CheckpointTensor>& tensors);

struct LoadedCheckpoint {
  std::string path;
  nlohmann::json meta;
  std::vector<std::string> names;
  std::vector<std::vector<float>> tensors;
  const std::vector<float>& get(const std::string& name) const;  // throws UsageError if absent
};

// Reads a training checkpoint and fully verifies it: structure, sizes (against the file size, before
// allocating), checksum, and then its metadata (Note [Checkpoint metadata is input] in checkpoint.cpp):
// "model" (validate_model_config), "step" and "adam_t" in [0, 2^31-1), "loader_pos" >= 0, "seq" in
// [1, max_seq_len], "global_batch" and "world_size" >= 1, "tokenizer" a name, "data_dir" a string,
// tensors "params", "adam_m", "adam_v" of the model's parameter count. A FIFO, directory or device
// is refused without blocking. Every failure is UsageError("<path>: <what is wrong>").
LoadedCheckpoint load_checkpoint(const std::string& path);
// The container only: structure, sizes and checksum, any metadata (tests, tools).
LoadedCheckpoint load_checkpoint_file(const std::string& path);
// The validated model configuration of a checkpoint from load_checkpoint (UsageError naming the file).
ModelConfig checkpoint_model(const LoadedCheckpoint& ck);
// The metadata's "model" object for m: what checkpoint_model reads back.
nlohmann::json model_json(const ModelConfig& m);
// Reads only the metadata (structure checked, checksum not).
nlohmann::json read_checkpoint_meta(const std::string& path);
// The checksum of a checkpoint: the CRC-32 its trailer stores and the one computed over every byte
// before the trailer (streamed, nothing allocated per tensor). UsageError for a file whose structure or
// trailer is broken, as load_checkpoint_file; a mismatch is for the caller to judge (`info` shows both).
struct CheckpointChecksum {
  uint32_t stored = 0, computed = 0;
};
CheckpointChecksum checkpoint_checksum(const std::string& path);

std::string checkpoint_path(const std::string& dir, int step);
// ckpt_*.bin files of dir, newest (highest step) first; empty if dir does not exist.
std::vector<std::string> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep` checkpoints at or below step `current` (keep <= 0: nothing). The
// checkpoint of `current` itself is never deleted, nor is any of a higher step: those were left by an
// earlier run or a resume that skipped them as corrupt, and counting them would delete the checkpoint
// just written while keeping one that cannot be resumed from (Note [Pruning]).
void prune_checkpoints(const std::string& dir, int keep, int current);

}  // namespace mc
