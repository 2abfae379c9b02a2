// Token data: llm.c-compatible shards, the data directory, tokenizers and the rank-sharded loader.
// Shard format: 256 little-endian int32 header ([0] magic 20240520, [1] version 1, [2] token count),
// then count uint16 tokens. Every shard is validated on open; a bad one throws UsageError naming the
// file and the defect. The loader is stateless: the batch of a step is a pure function of
// (seed, global sequence position), so its checkpointed state is one integer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mc {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int kGpt2Vocab = 50257;

// A read-only, memory-mapped, validated token shard.
class TokenShard {
 public:
  // Validates magic, version, file size == 1024 + 2*count, count > 0, every token < vocab_size.
  // Throws UsageError("<path>: <what is wrong>").
  TokenShard(const std::string& path, int vocab_size);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  const uint16_t* tokens() const { return tokens_; }
  size_t size() const { return count_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  size_t count_ = 0;
};

// Writes a shard atomically (temp file, fsync, rename). Throws RuntimeError on I/O failure.
void write_shard(const std::string& path, const std::vector<uint16_t>& tokens);

// What a data directory holds. tokenizer.json ({"tokenizer": "byte", "vocab_size": 256}) records
// the tokenizer; without it the directory is taken as GPT-2 tokens (vocab 50257), like llm.c's.
struct DataDir {
  std::string dir;
  std::vector<std::string> train_files;  // DIR/*train*.bin, sorted
  std::vector<std::string> val_files;    // DIR/*val*.bin, sorted
  std::string tokenizer = "gpt2";
  int vocab_size = kGpt2Vocab;
};
// Throws UsageError naming --data DIR if it is missing or has no train shards.
DataDir open_data_dir(const std::string& dir);

// The sequences of a set of shards: windows of T+1 tokens at stride T inside each shard (never
// crossing a shard boundary). Sequence i yields inputs x[0..T) and targets y[0..T) = x shifted by one.
class Dataset {
 public:
  Dataset(const std::vector<std::string>& files, int vocab_size, int T);
  size_t num_sequences() const { return total_; }
  int seq_len() const { return T_; }
  void get(size_t i, int* inputs, int* targets) const;
  size_t num_tokens() const;

 private:
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<size_t> first_;  // first global sequence index of each shard (+ total at the end)
  size_t total_ = 0;
  int T_ = 0;
};

// Deterministic shuffled order over a Dataset: global position p (0, 1, 2, ... across epochs)
// maps to sequence perm_{epoch}(p mod num_sequences), epoch = p / num_sequences, where perm_e is a
// permutation seeded by (seed, e). Position p is the same sequence whatever the world size.
class Loader {
 public:
  Loader(const Dataset& ds, uint64_t seed);
  // Fills count sequences starting at global position pos: inputs/targets are count*T int32.
  void fill(uint64_t pos, int count, int* inputs, int* targets);
  uint64_t epoch_of(uint64_t pos) const;

 private:
  const Dataset& ds_;
  uint64_t seed_;
  uint64_t cached_epoch_ = ~uint64_t(0);
  std::vector<uint32_t> perm_;
};

// Byte-level tokenizer: vocabulary 256, token = byte value.
constexpr int kByteVocab = 256;
std::vector<uint16_t> byte_encode(const std::string& text);
std::string byte_decode(const std::vector<int>& tokens);

// Decodes tokens for display with the tokenizer recorded in the data directory or checkpoint:
// "byte" decodes bytes; "gpt2" uses DIR/gpt2_tokenizer.bin (llm.c's format) when present, else
// prints token ids as "<id>".
std::string decode_tokens(const std::string& tokenizer, const std::string& data_dir,
                          const std::vector<int>& tokens);
// Encodes a prompt; only the byte tokenizer can encode (UsageError naming --prompt otherwise).
std::vector<int> encode_prompt(const std::string& tokenizer, const std::string& text);

// `minicolossus prepare`: tokenizes a text file into DIR/train_000000.bin, DIR/val_000000.bin
// (the last val_fraction of the tokens, at least one sequence's worth) and DIR/tokenizer.json.
// Throws UsageError for a missing/empty input or an unknown tokenizer. Writes atomically.
void prepare_text(const std::string& input, const std::string& out_dir, const std::string& tokenizer,
                  double val_fraction = 0.1);

// The built-in default corpus (the King James Bible from Debian's bible-kjv, or the copy of its text a
// bundle carries in share/minicolossus/kjv.txt): prepared once into $MC_CACHE_DIR/kjv, or
// $XDG_CACHE_HOME/minicolossus/kjv, or ~/.cache/minicolossus/kjv (HOME from the user database when unset),
// and returned. Safe when several ranks race: each prepares into a private temporary directory and
// renames it into place.
std::string default_data_dir();
// True when the default corpus's text can be had here (bible-kjv installed, or a bundle's copy).
bool default_corpus_available();

}  // namespace mc
