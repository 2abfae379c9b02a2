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

namespace mc {

struct CheckpointTensor {
  std::string name;
  const float* data;  // host memory
  size_t numel;
};

// Writes path atomically (temp + fsync + rename + directory fsync). Throws RuntimeError on I/O error.
void save_checkpoint(const std::string& path, const nlohmann::json& meta,
                     const std::vector<CheckpointTensor>& tensors);

struct LoadedCheckpoint {
  std::string path;
  nlohmann::json meta;
  std::vector<std::string> names;
  std::vector<std::vector<float>> tensors;
  const std::vector<float>& get(const std::string& name) const;  // throws UsageError if absent
};

// Reads and fully verifies (structure, sizes, checksum). Throws UsageError("<path>: <what is wrong>").
LoadedCheckpoint load_checkpoint(const std::string& path);
// Reads only the metadata (structure checked, checksum not).
nlohmann::json read_checkpoint_meta(const std::string& path);

std::string checkpoint_path(const std::string& dir, int step);
// ckpt_*.bin files of dir, newest (highest step) first; empty if dir does not exist.
std::vector<std::string> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep` checkpoints (keep <= 0: nothing).
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace mc
