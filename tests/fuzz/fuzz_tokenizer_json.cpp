// Fuzz target: a data directory's tokenizer.json (src/data/shard.cpp open_data_dir) and the
// tokenizer functions that consume what it names (src/data/tokenizer.cpp decode_tokens,
// encode_prompt). Input: the JSON text. The directory also holds one valid byte-token train shard.
#include <sys/stat.h>

#include <cstdint>
#include <vector>

#include "data/data.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/data";
    ::mkdir(d.c_str(), 0700);
    std::vector<uint16_t> tokens(300);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint16_t(i * 7 % 256);
    mc::write_shard(d + "/train_000000.bin", tokens);
    return d;
  }();
  fuzz::write_input("data/tokenizer.json", data, size);
  mc::DataDir dd;
  if (!fuzz::accepts([&] { dd = mc::open_data_dir(dir); })) return 0;
  if (dd.vocab_size <= 0 || dd.vocab_size > 65536 || dd.tokenizer.empty())
    fuzz::finding(mc::strfmt("open_data_dir accepted tokenizer '%s' with vocab_size %d",
                             dd.tokenizer.substr(0, 40).c_str(), dd.vocab_size));
  if (dd.tokenizer == "byte" && dd.vocab_size != mc::kByteVocab)
    fuzz::finding(mc::strfmt("open_data_dir accepted the byte tokenizer with vocab_size %d", dd.vocab_size));
  if (dd.tokenizer == "gpt2" && dd.vocab_size != mc::kGpt2Vocab)
    fuzz::finding(mc::strfmt("open_data_dir accepted the gpt2 tokenizer with vocab_size %d", dd.vocab_size));

  // Decoding never throws, whatever the ids (negative, past the vocabulary).
  std::vector<int> ids;
  for (size_t i = 0; i + 4 <= size && ids.size() < 64; i += 4) {
    uint32_t u;
    std::memcpy(&u, data + i, 4);
    ids.push_back(int(u));
  }
  ids.push_back(-1);
  ids.push_back(dd.vocab_size);
  try {
    mc::decode_tokens(dd.tokenizer, dir, ids);
  } catch (const std::exception& e) {
    fuzz::finding(std::string("decode_tokens threw: ") + e.what());
  }
  // Encoding the input as a prompt: refused (UsageError) or every token inside the vocabulary.
  std::vector<int> enc;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (fuzz::accepts([&] { enc = mc::encode_prompt(dd.tokenizer, text); }))
    for (int t : enc)
      if (t < 0 || t >= dd.vocab_size)
        fuzz::finding(mc::strfmt("encode_prompt gave token %d outside vocabulary %d", t, dd.vocab_size));
  // The shard (tokens < 256) opens exactly when the vocabulary covers it.
  fuzz::accepts([&] { mc::Dataset ds(dd.train_files, dd.vocab_size, 16); });
  return 0;
}
