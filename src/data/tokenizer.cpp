// Tokenizers: the byte-level one (vocab 256, token = byte) and GPT-2's: llm.c's gpt2_tokenizer.bin for
// decoding when a data directory carries one, else the BPE ranks (data/bpe.h); and a data directory's
// tokenizer.json. Invariant: decoding never throws on an unknown id (it prints "<id>"); only a malformed
// tokenizer file or an unencodable prompt is an error.
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/files.h"
#include "data/bpe.h"
#include "data/data.h"

namespace mc {

namespace {

std::string id_text(int id) { return "<" + std::to_string(id) + ">"; }

// Tables are loaded once per path: `sample` decodes one token per call.
const std::vector<std::string>& llmc_tokenizer(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::vector<std::string>>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[path];
  if (!slot) slot = std::make_unique<std::vector<std::string>>(read_llmc_tokenizer(path));
  return *slot;
}

}  // namespace

std::vector<std::string> read_llmc_tokenizer(const std::string& path) {
  const std::string bytes = read_input_file(path, "", size_t(64) << 20);
  const unsigned char* h = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 1024)
    throw UsageError(strfmt("%s: truncated header (a tokenizer header is 1024 bytes)", path.c_str()));
  auto le32 = [&](int k) {
    const unsigned char* p = h + 4 * k;
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  };
  if (le32(0) != kLlmcTokenizerMagic)
    throw UsageError(strfmt("%s: bad magic: expected %u, found %u (not an llm.c tokenizer file)", path.c_str(),
                            kLlmcTokenizerMagic, le32(0)));
  if (le32(1) != 1 && le32(1) != 2)
    throw UsageError(strfmt("%s: unknown tokenizer version %u (expected 1 or 2)", path.c_str(), le32(1)));
  const uint32_t vocab = le32(2);
  if (vocab == 0 || vocab > 1000000)
    throw UsageError(strfmt("%s: implausible vocabulary size %u", path.c_str(), vocab));
  if (bytes.size() - 1024 < vocab)  // at least the length byte of every token
    throw UsageError(strfmt("%s: truncated: %zu bytes cannot hold %u tokens", path.c_str(), bytes.size(), vocab));
  std::vector<std::string> table(vocab);
  size_t pos = 1024;
  for (uint32_t i = 0; i < vocab; ++i) {
    if (pos >= bytes.size()) throw UsageError(strfmt("%s: truncated at token %u of %u", path.c_str(), i, vocab));
    const size_t len = h[pos++];
    if (bytes.size() - pos < len) throw UsageError(strfmt("%s: truncated at token %u of %u", path.c_str(), i, vocab));
    table[i].assign(bytes, pos, len);
    pos += len;
  }
  return table;
}

void write_llmc_tokenizer(const std::string& path, const std::vector<std::string>& tokens, uint32_t eot) {
  uint32_t header[256] = {kLlmcTokenizerMagic, 2, uint32_t(tokens.size()), eot};
  std::string body;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    MC_CHECK(!t.empty() && t.size() < 256, "%s: token %zu is %zu bytes (llm.c's format holds 1 to 255)",
             path.c_str(), i, t.size());
    body += char(static_cast<unsigned char>(t.size()));
    body += t;
  }
  write_file_atomic(path, {{header, sizeof header}, {body.data(), body.size()}});
}

void read_tokenizer_json(const std::string& path, const std::string& what, std::string* tokenizer,
                         int* vocab_size) {
  const std::string text = read_input_file(path, what, size_t(1) << 20);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw UsageError(strfmt("%s: not valid JSON", path.c_str()));
  if (!j.is_object() || !j.contains("tokenizer") || !j["tokenizer"].is_string() || !j.contains("vocab_size") ||
      !j["vocab_size"].is_number_integer())
    throw UsageError(strfmt("%s: expected {\"tokenizer\": <name>, \"vocab_size\": <integer>}", path.c_str()));
  const std::string name = j["tokenizer"].get<std::string>();
  const int64_t v = j["vocab_size"].get<int64_t>();
  if (v <= 0 || v > 65536)
    throw UsageError(strfmt("%s: vocab_size %lld must be in [1, 65536] (tokens are uint16)", path.c_str(), (long long)v));
  if (!valid_tokenizer_name(name))
    throw UsageError(strfmt("%s: tokenizer name %s must be 1 to 64 of [A-Za-z0-9_.-]", path.c_str(),
                            j["tokenizer"].dump().c_str()));
  if (name == "byte" && v != kByteVocab)
    throw UsageError(strfmt("%s: the byte tokenizer has vocab_size 256, not %lld", path.c_str(), (long long)v));
  if (name == "gpt2" && v != kGpt2Vocab)  // its encoder yields ids up to 50256, whatever the file says
    throw UsageError(strfmt("%s: the gpt2 tokenizer has vocab_size %d, not %lld", path.c_str(), kGpt2Vocab,
                            (long long)v));
  *tokenizer = name;
  *vocab_size = int(v);
}

std::vector<uint16_t> byte_encode(const std::string& text) {
  std::vector<uint16_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = uint16_t((unsigned char)text[i]);
  return out;
}

std::string byte_decode(const std::vector<int>& tokens) {
  std::string out;
  out.reserve(tokens.size());
  for (int t : tokens) {
    if (t >= 0 && t < kByteVocab)
      out.push_back(char((unsigned char)t));
    else
      out += id_text(t);
  }
  return out;
}

std::string decode_tokens(const std::string& tokenizer, const std::string& data_dir, const std::vector<int>& tokens) {
  if (tokenizer == "byte") return byte_decode(tokens);
  const std::vector<std::string>* table = nullptr;
  if (tokenizer == "gpt2" && !data_dir.empty()) {
    const std::string path = data_dir + "/gpt2_tokenizer.bin";
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) table = &llmc_tokenizer(path);  // present: must be valid
  }
  if (!table && tokenizer == "gpt2") {
    if (!find_gpt2_ranks().empty()) return gpt2_bpe().decode(tokens);  // present: must be valid
    static std::once_flag warned;
    std::call_once(warned, [] {
      std::fprintf(stderr, "GPT-2's BPE ranks (gpt2.tiktoken) not found: printing token ids (run scripts/setup.sh)\n");
    });
  }
  std::string out;
  for (int t : tokens) {
    if (table && t >= 0 && size_t(t) < table->size())
      out += (*table)[size_t(t)];
    else
      out += id_text(t);
  }
  return out;
}

std::vector<int> encode_prompt(const std::string& tokenizer, const std::string& text) {
  if (text.empty()) return {};  // nothing to encode: the caller starts from its own start token
  if (tokenizer == "gpt2") return gpt2_bpe("--prompt").encode(text);
  if (tokenizer != "byte")
    throw UsageError(strfmt("--prompt: the %s tokenizer cannot encode text in minicolossus (byte and gpt2 "
                            "can); leave --prompt out to sample from <|endoftext|>",
                            tokenizer.c_str()));
  std::vector<int> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = int((unsigned char)text[i]);
  return out;
}

}  // namespace mc
