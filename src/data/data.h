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

#include "core/errors.h"

namespace mc {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int kGpt2Vocab = 50257;

// The shard a run is reading changed under it (truncated, or rewritten with out-of-range tokens):
// a RuntimeError (exit 1) naming the file. The trainer catches it to checkpoint before stopping.
struct DataChanged : RuntimeError {
  explicit DataChanged(const std::string& m) : RuntimeError(m) {}
};

// A set of shards too short for even one sequence of the requested length. The only data defect
// that is a warning, not an error, for the validation set (the trainer then trains without it).
struct DataTooShort : UsageError {
  explicit DataTooShort(const std::string& m) : UsageError(m) {}
};

// A validated token shard, read with pread from the descriptor it keeps open.
// Note [Shards are read, not mapped]: a mapped file that is truncated while mapped turns the next
// access into SIGBUS, which kills the run and loses the steps since the last checkpoint. Reading each
// sequence with pread turns the same event into a short read, reported as DataChanged. The cost is one
// system call per sequence: ~1.5 us more per 1024-token sequence than copying from a mapping (10k
// sequences: 30 ms instead of 15 ms), well under a millisecond per training step.
class TokenShard {
 public:
  // Validates magic, version, file size == 1024 + 2*count, count > 0, every token < vocab_size, and
  // computes the content fingerprint on the way. Throws UsageError("<path>: <what is wrong>");
  // a FIFO, directory or device is refused without blocking (open_input_file).
  TokenShard(const std::string& path, int vocab_size);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  // Copies tokens [first, first + n) into out. Throws DataChanged naming the file if the file no
  // longer holds them (truncated) or one is now out of range for the vocabulary.
  void read(size_t first, size_t n, uint16_t* out) const;
  std::vector<uint16_t> read_all() const;  // every token (tests, small shards)
  size_t size() const { return count_; }
  const std::string& path() const { return path_; }
  // 64-bit content fingerprint of the whole file (Note [Shard fingerprint] in shard.cpp).
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  std::string path_;
  int fd_ = -1;
  int vocab_ = 0;
  size_t count_ = 0;
  uint64_t fingerprint_ = 0;
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
// A tokenizer name as tokenizer.json and checkpoints record it: 1 to 64 of [A-Za-z0-9_.-].
bool valid_tokenizer_name(const std::string& name);
// Throws UsageError naming --data DIR if it is missing or has no train shards.
DataDir open_data_dir(const std::string& dir);
// One 64-bit fingerprint of the content of every shard of dd, train files then val files, in order
// (ranks compare it to be sure they read the same bytes, not just the same names). Free for shards
// already opened by a TokenShard in this process (their fingerprints are remembered by path, device,
// inode, size and mtime); others are opened and validated. Throws what TokenShard throws.
uint64_t data_fingerprint(const DataDir& dd);

// The sequences of a set of shards: windows of T+1 tokens at stride T inside each shard (never
// crossing a shard boundary). Sequence i yields inputs x[0..T) and targets y[0..T) = x shifted by one.
class Dataset {
 public:
  // Throws DataTooShort when the shards hold no full sequence of T+1 tokens, UsageError for a bad shard.
  Dataset(const std::vector<std::string>& files, int vocab_size, int T);
  size_t num_sequences() const { return total_; }
  int seq_len() const { return T_; }
  // Throws DataChanged if the shard holding sequence i changed since it was validated.
  void get(size_t i, int* inputs, int* targets) const;
  size_t num_tokens() const;
  // The shards' fingerprints combined in order (see TokenShard::fingerprint).
  uint64_t fingerprint() const;

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

// llm.c's tokenizer file (gpt2_tokenizer.bin): a 256 uint32 header ([0] magic, [1] version 1|2, [2] vocab
// size, [3] eot id in v2), then per token a uint8 length and that many bytes. Reads and checks one (at
// most 64 MiB) and returns its tokens' bytes; UsageError("<path>: <what is wrong>") otherwise.
constexpr uint32_t kLlmcTokenizerMagic = 20240328;
std::vector<std::string> read_llmc_tokenizer(const std::string& path);
// Writes one (version 2, atomically): every token 1 to 255 bytes long, as llm.c's reader asserts.
void write_llmc_tokenizer(const std::string& path, const std::vector<std::string>& tokens, uint32_t eot);

// A data directory's tokenizer.json: {"tokenizer": <valid_tokenizer_name>, "vocab_size": <1 to 65536>},
// 256 for "byte". UsageError("<path>: <what is wrong>"); `what` names the flag where it cannot be opened.
void read_tokenizer_json(const std::string& path, const std::string& what, std::string* tokenizer,
                         int* vocab_size);

// Decodes tokens for display with the tokenizer recorded in the data directory or checkpoint:
// "byte" decodes bytes; "gpt2" uses DIR/gpt2_tokenizer.bin (llm.c's format) when present, else GPT-2's
// BPE ranks (gpt2_bpe() in data/bpe.h), else (no ranks file here) prints token ids as "<id>".
// UsageError when a tokenizer file that is there is bad.
std::string decode_tokens(const std::string& tokenizer, const std::string& data_dir,
                          const std::vector<int>& tokens);
// Encodes a prompt with the byte tokenizer or GPT-2's BPE (UsageError naming --prompt for any other
// tokenizer; the gpt2 one throws what gpt2_bpe() throws).
std::vector<int> encode_prompt(const std::string& tokenizer, const std::string& text);

// `minicolossus prepare`: tokenizes a text file into DIR/train_000000.bin, DIR/val_000000.bin
// (the last val_fraction of the tokens, at least one sequence's worth) and DIR/tokenizer.json; for
// gpt2 also DIR/gpt2_tokenizer.bin, llm.c's tokenizer file, so that llm.c decodes the shards.
// Tokenizers: "byte" (vocab 256) and "gpt2" (vocab 50257: <|endoftext|>, then tiktoken's
// encode_ordinary of the whole text; Note [One document] in prepare.cpp). Shows progress on stderr when
// tokenizing takes more than a second. Throws UsageError for a missing/empty input, an unknown
// tokenizer, a missing/bad GPT-2 ranks file, a part too large for one shard (prepare_split), an --out
// that holds other shards or takes no files (Note [prepare's output directory]). Writes atomically.
void prepare_text(const std::string& input, const std::string& out_dir, const std::string& tokenizer,
                  double val_fraction = 0.1);

// UsageError("<who>: cannot write into <dir>: <reason>") unless a file can be created in dir (a
// read-only file system, no permission, no space for an inode): tried with a real, removed file, so
// that a command refuses its output directory before hours of work rather than at the first write.
void probe_writable_dir(const std::string& dir, const std::string& who);

// The train/val split prepare makes of n tokens (n >= 2): the last val_fraction of them, but at least
// one 1024-token sequence plus its target when the text has room for that twice over, otherwise half.
// Both parts are non-empty. Each part is one shard, whose header counts tokens in an int32: a part of
// more than max_shard_tokens (2^31 - 1) is UsageError naming --input, before anything is written.
struct PrepareSplit {
  size_t n_train = 0, n_val = 0;
};
PrepareSplit prepare_split(size_t n, double val_fraction, const std::string& input,
                           size_t max_shard_tokens = size_t(INT32_MAX));

// The built-in default corpus (the King James Bible from Debian's bible-kjv, or the copy of its text a
// bundle carries in share/minicolossus/kjv.txt), tokenized with `tokenizer` (byte | gpt2): prepared once
// into $MC_CACHE_DIR/kjv, or $XDG_CACHE_HOME/minicolossus/kjv, or ~/.cache/minicolossus/kjv (HOME from
// the user database when unset; kjv-gpt2 for the gpt2 tokenizer), and returned. Safe when several ranks
// race: each prepares into a private temporary directory and renames it into place.
std::string default_data_dir(const std::string& tokenizer = "byte");
// The cache directory: $MC_CACHE_DIR, else $XDG_CACHE_HOME/minicolossus, else ~/.cache/minicolossus
// (HOME from the user database when unset). RuntimeError when none can be named.
std::string cache_root();
// The same without MC_CACHE_DIR: the user's own cache (tests point MC_CACHE_DIR at a scratch directory,
// yet still find the GPT-2 ranks scripts/setup.sh fetched there).
std::string user_cache_root();
// <bundle>/share/minicolossus/<name> beside <bundle>/bin/<this executable>, when that is a regular
// file (a relocatable bundle from scripts/package.sh); "" otherwise.
std::string bundled_share_file(const std::string& name);
// True when the default corpus's text can be had here (bible-kjv installed, or a bundle's copy).
bool default_corpus_available();

}  // namespace mc
