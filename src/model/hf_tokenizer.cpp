#include "model/hf_tokenizer.h"
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include "core/errors.h"
#include "data/bpe.h"

namespace mc {

namespace {

// The code point as UTF-8 (only code points below 0x800 occur here).
std::string utf8(unsigned cp) {
  if (cp < 0x80) return std::string(1, char(cp));
  return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
}

// A byte is kept as its own character when it is printable and not white space in Latin-1: '!'..'~',
// '¡'..'¬' and '®'..'ÿ' (188 bytes). The rest (control characters, space, DEL, NBSP, soft hyphen...)
// take the code points 256, 257, ... in byte order, so every token is printable text with no spaces.
bool kept_as_itself(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

std::string hf_string(const std::string& bytes) {
  std::string s;
  for (unsigned char b : bytes) s += hf_byte_char(b);
  return s;
}

nlohmann::ordered_json tokenizer_config(int max_len, bool gpt2) {
  nlohmann::ordered_json special = gpt2 ? nlohmann::ordered_json("<|endoftext|>") : nlohmann::ordered_json();
  return {{"tokenizer_class", "GPT2Tokenizer"},
          {"model_max_length", max_len},
          {"bos_token", special},
          {"eos_token", special},
          {"unk_token", special},
          {"add_prefix_space", false},
          // Decoding gives back the exact text (no space clean-up before punctuation).
          {"clean_up_tokenization_spaces", false}};
}

}  // namespace

std::string hf_byte_char(unsigned char b) {
  if (kept_as_itself(b)) return utf8(b);
  unsigned n = 0;  // how many bytes below b are not kept as themselves
  for (unsigned x = 0; x < b; ++x) n += !kept_as_itself(x);
  return utf8(256 + n);
}

// Note [Merges from ranks]: tiktoken's file lists tokens by rank, not the pairs that make them. BPE
// with the merges of rank < r applied to token r's bytes must stop at exactly two pieces (the merge
// that creates token r joins them; a merge of lower rank cannot produce r itself). Those two pieces are
// merges.txt's line for rank r, which is how GPT-2's own merges.txt reads: transformers then applies
// the merges in file order, lowest rank first, as tiktoken does.
std::vector<std::pair<int, int>> gpt2_merges(const Gpt2Bpe& bpe) {
  const std::vector<std::string>& tokens = bpe.token_bytes();
  std::unordered_map<std::string, int> rank;
  rank.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) rank.emplace(tokens[i], int(i));
  std::vector<std::pair<int, int>> merges;
  merges.reserve(tokens.size() > 256 ? tokens.size() - 256 : 0);
  for (size_t r = 256; r < tokens.size(); ++r) {
    std::vector<std::string> parts;
    for (char c : tokens[r]) parts.emplace_back(1, c);
    for (;;) {
      int best = std::numeric_limits<int>::max();
      size_t at = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = rank.find(parts[i] + parts[i + 1]);
        if (it != rank.end() && it->second < int(r) && it->second < best) best = it->second, at = i;
      }
      if (best == std::numeric_limits<int>::max()) break;
      parts[at] += parts[at + 1];
      parts.erase(parts.begin() + long(at) + 1);
    }
    MC_CHECK(parts.size() == 2, "%s: token %zu does not split into two lower-ranked tokens (%zu pieces)",
             bpe.path().c_str(), r, parts.size());
    merges.emplace_back(rank.at(parts[0]), rank.at(parts[1]));
  }
  return merges;
}

std::vector<std::pair<std::string, std::string>> hf_tokenizer_files(const std::string& tokenizer, int max_len) {
  std::vector<std::string> keys;  // by id
  std::string merges = "#version: 0.2\n";
  if (tokenizer == "gpt2") {
    const Gpt2Bpe& bpe = gpt2_bpe("export --format hf");
    for (const std::string& t : bpe.token_bytes()) keys.push_back(hf_string(t));
    keys.push_back("<|endoftext|>");  // kGpt2EndOfText
    for (auto [a, b] : gpt2_merges(bpe)) merges += keys[size_t(a)] + " " + keys[size_t(b)] + "\n";
  } else if (tokenizer == "byte") {
    for (int b = 0; b < 256; ++b) keys.push_back(hf_byte_char(static_cast<unsigned char>(b)));
  } else {
    return {};
  }
  // vocab.json in id order, one entry a line (nlohmann's objects would sort the keys or, ordered,
  // insert in quadratic time); the keys are escaped as JSON strings.
  std::string vocab = "{\n";
  for (size_t i = 0; i < keys.size(); ++i)
    vocab += " " + nlohmann::json(keys[i]).dump() + ": " + std::to_string(i) + (i + 1 < keys.size() ? ",\n" : "\n");
  vocab += "}\n";
  return {{"vocab.json", vocab},
          {"merges.txt", merges},
          {"tokenizer_config.json", tokenizer_config(max_len, tokenizer == "gpt2").dump(2) + "\n"}};
}

}  // namespace mc
