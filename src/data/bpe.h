// GPT-2's byte-pair-encoding tokenizer, offline: the ranks file tiktoken reads (gpt2.tiktoken, fetched
// by scripts/setup.sh), GPT-2's pre-tokenising regular expression (PCRE2), and the merges by rank.
// Invariant: for valid UTF-8 text, encode() gives exactly tiktoken's encode_ordinary() ids with the same
// ranks file (Note [Agreement with tiktoken] in bpe.cpp); for any bytes at all, decode(encode(x)) == x.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mc {

constexpr int kGpt2EndOfText = 50256;   // <|endoftext|>: special, never produced by encode()
constexpr int kGpt2MergeableRanks = 50256;  // tokens 0..50255 are byte strings from the ranks file
// sha256 of whisper/assets/gpt2.tiktoken in openai-whisper 20250625 (also pinned in scripts/setup.sh).
extern const char* const kGpt2RanksSha256;

class Gpt2Bpe {
 public:
  // Reads and checks a ranks file: sha256 must be kGpt2RanksSha256, then every line "<base64> <rank>"
  // with ranks 0, 1, 2, ... Throws UsageError naming the file (one line) when it is unreadable,
  // too large, has the wrong checksum or is malformed. `what` prefixes the path in messages
  // ("MC_GPT2_TIKTOKEN"); empty: the message starts with the path.
  static std::unique_ptr<Gpt2Bpe> load(const std::string& path, const std::string& what = "");
  ~Gpt2Bpe();
  Gpt2Bpe(const Gpt2Bpe&) = delete;
  Gpt2Bpe& operator=(const Gpt2Bpe&) = delete;

  // Appends the tokens of text to out (tiktoken's encode_ordinary: "<|endoftext|>" in the text is
  // plain text). Any bytes are accepted (Note [Invalid UTF-8]). progress, when given, is called now
  // and then with the number of bytes of text done so far. Thread-safe (the piece cache is locked).
  void encode(std::string_view text, std::vector<uint16_t>& out,
              const std::function<void(size_t)>& progress = {}) const;
  std::vector<int> encode(std::string_view text) const;
  // The bytes of the tokens, concatenated. 50256 is "<|endoftext|>"; an id outside [0, 50257) is
  // written "<id>" (decoding never throws).
  std::string decode(const std::vector<int>& tokens) const;
  const std::string& path() const { return path_; }
  // The bytes of every mergeable token, by id (0 .. kGpt2MergeableRanks - 1).
  const std::vector<std::string>& token_bytes() const { return tokens_; }

  // The BPE of one piece (no pre-tokenisation), for tests: tiktoken's byte_pair_encode.
  void encode_piece(std::string_view piece, std::vector<uint16_t>& out) const;

 private:
  Gpt2Bpe() = default;
  // The BPE of one piece, and the same through the piece cache; the caller holds the lock.
  void merge_piece(std::string_view piece, std::vector<uint16_t>& out) const;
  void cached_piece(std::string_view piece, std::vector<uint16_t>& out) const;
  struct Impl;
  std::string path_;
  std::vector<std::string> tokens_;                        // id -> bytes
  std::unordered_map<std::string_view, uint32_t> ranks_;  // bytes -> id (views into tokens_)
  std::unique_ptr<Impl> impl_;                             // the compiled pattern and the piece cache
};

// One line of a tiktoken ranks file, "<base64 bytes> <rank>" (standard base64 with padding, a rank of
// at most 12 digits): the bytes and the rank, or false when the line is not one.
bool parse_tiktoken_line(std::string_view line, std::string* bytes, uint64_t* rank);

// Where the ranks file is looked up, in order: $MC_GPT2_TIKTOKEN (only there, when set); a bundle's
// <exe>/../share/minicolossus/gpt2.tiktoken; <cache root>/gpt2.tiktoken; and, when MC_CACHE_DIR is set,
// the default user cache's gpt2.tiktoken too. Returns $MC_GPT2_TIKTOKEN when set (even if missing:
// loading then names it), else the first that exists, "" when none does.
std::string find_gpt2_ranks();
// The tokenizer from find_gpt2_ranks(), loaded once per process (per path). Throws UsageError when
// the file is missing (a line starting with `who`, saying to run scripts/setup.sh) or bad (naming it).
const Gpt2Bpe& gpt2_bpe(const std::string& who = "--tokenizer gpt2");

}  // namespace mc
