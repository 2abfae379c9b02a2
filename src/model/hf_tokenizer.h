// The tokenizer files of a Hugging Face GPT-2 directory (vocab.json, merges.txt, tokenizer_config.json),
// written beside `export --format hf`'s weights so that AutoTokenizer.from_pretrained(DIR) and
// pipeline("text-generation", model=DIR) work with no other download.
// Invariant: transformers' GPT2Tokenizer(Fast) built from these files gives the same ids as ours: GPT-2's
// BPE for the gpt2 tokenizer (tiktoken's ranks, as merges in rank order), one id per byte for the byte
// tokenizer (no merges, no special tokens).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace mc {

class Gpt2Bpe;

// GPT-2's reversible byte -> printable code point map (vocab.json and merges.txt write each byte of a
// token as one of these characters): bytes that are printable Latin-1 and not a space map to themselves,
// the other 68 to 256, 257, ... in byte order. Returned as UTF-8.
std::string hf_byte_char(unsigned char b);

// The merges of GPT-2's BPE in rank order (token 256 + i is the concatenation of merges[i]'s two tokens),
// recovered from the ranks: a token's two parts are what the BPE makes of its bytes using only the merges
// of lower rank. Throws RuntimeError if a token does not split into exactly two (not a BPE ranks file).
std::vector<std::pair<int, int>> gpt2_merges(const Gpt2Bpe& bpe);

// The files (name, content) for tokenizer "gpt2" (needs the ranks file: gpt2_bpe()) or "byte"; max_len
// is the model's context. Empty for any other tokenizer name.
std::vector<std::pair<std::string, std::string>> hf_tokenizer_files(const std::string& tokenizer, int max_len);

}  // namespace mc
