// The Hugging Face tokenizer files export --format hf writes (src/model/hf_tokenizer.h): GPT-2's byte
// characters, the merges recovered from tiktoken's ranks, and the files' contents. That transformers
// reads them and encodes like tiktoken is checked by scripts/check_hf_export.py where transformers is
// installed. The gpt2 tests need the ranks file scripts/setup.sh fetches and are skipped without it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "data/bpe.h"
#include "model/hf_tokenizer.h"

namespace mc {
namespace {

std::map<std::string, std::string> files_of(const std::string& tokenizer, int max_len) {
  std::map<std::string, std::string> m;
  for (auto& [name, text] : hf_tokenizer_files(tokenizer, max_len)) m[name] = text;
  return m;
}

TEST(HfTokenizer, ByteCharactersArePrintableDistinctAndGpt2s) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string c = hf_byte_char(static_cast<unsigned char>(b));
    EXPECT_TRUE(seen.insert(c).second) << "byte " << b << " shares its character";
    // One code point: one byte below 0x80, else a two-byte UTF-8 sequence.
    ASSERT_FALSE(c.empty());
    if (static_cast<unsigned char>(c[0]) < 0x80) {
      EXPECT_EQ(c.size(), 1u);
      EXPECT_GT(c[0], ' ') << "byte " << b << " is white space or a control character";
      EXPECT_NE(c[0], 0x7F);
    } else {
      EXPECT_EQ(c.size(), 2u) << "byte " << b;
    }
  }
  // The characters GPT-2's vocab.json is known by: space is "Ġ" (U+0120), newline "Ċ" (U+010A),
  // printable ASCII itself, and the last remapped byte, the soft hyphen 0xAD, is U+0143 ("Ń").
  EXPECT_EQ(hf_byte_char(' '), "\xC4\xA0");
  EXPECT_EQ(hf_byte_char('\n'), "\xC4\x8A");
  EXPECT_EQ(hf_byte_char(0), "\xC4\x80");
  EXPECT_EQ(hf_byte_char('a'), "a");
  EXPECT_EQ(hf_byte_char(0xAD), "\xC5\x83");
  EXPECT_EQ(hf_byte_char(0xE9), "\xC3\xA9");  // é is printable Latin-1: kept
}

TEST(HfTokenizer, ByteTokenizerIsOneIdPerByteWithNoMergesOrSpecialTokens) {
  auto f = files_of("byte", 128);
  ASSERT_EQ(f.size(), 3u);
  const auto vocab = nlohmann::json::parse(f.at("vocab.json"));
  ASSERT_EQ(vocab.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(vocab.at(hf_byte_char(static_cast<unsigned char>(b))), b);
  EXPECT_EQ(f.at("merges.txt"), "#version: 0.2\n");
  const auto cfg = nlohmann::json::parse(f.at("tokenizer_config.json"));
  EXPECT_EQ(cfg.at("tokenizer_class"), "GPT2Tokenizer");
  EXPECT_EQ(cfg.at("model_max_length"), 128);
  EXPECT_TRUE(cfg.at("eos_token").is_null());
  EXPECT_TRUE(cfg.at("unk_token").is_null());
  EXPECT_FALSE(cfg.at("clean_up_tokenization_spaces").get<bool>());
}

TEST(HfTokenizer, OtherTokenizersWriteNoFiles) { EXPECT_TRUE(hf_tokenizer_files("custom", 64).empty()); }

class HfGpt2 : public testing::Test {
 protected:
  void SetUp() override {
    const std::string ranks = find_gpt2_ranks();
    struct stat st {};
    if (ranks.empty() || ::stat(ranks.c_str(), &st) != 0)
      GTEST_SKIP() << "GPT-2's BPE ranks (gpt2.tiktoken) are not here: run scripts/setup.sh";
    bpe_ = &gpt2_bpe();
  }
  const Gpt2Bpe* bpe_ = nullptr;
};

TEST_F(HfGpt2, MergesRebuildEveryTokenFromLowerRanks) {
  const auto merges = gpt2_merges(*bpe_);
  const auto& tokens = bpe_->token_bytes();
  ASSERT_EQ(tokens.size(), size_t(kGpt2MergeableRanks));
  ASSERT_EQ(merges.size(), size_t(kGpt2MergeableRanks - 256));  // GPT-2's 50,000 merges
  for (size_t i = 0; i < merges.size(); ++i) {
    const int r = int(256 + i);
    auto [a, b] = merges[i];
    ASSERT_TRUE(a >= 0 && a < r && b >= 0 && b < r) << "merge for " << r << ": " << a << " " << b;
    ASSERT_EQ(tokens[size_t(a)] + tokens[size_t(b)], tokens[size_t(r)]) << "merge for " << r;
  }
  // GPT-2's merges.txt begins "Ġ t", "Ġ a", "h e".
  EXPECT_EQ(tokens[size_t(merges[0].first)] + "|" + tokens[size_t(merges[0].second)], " |t");
  EXPECT_EQ(tokens[size_t(merges[1].first)] + "|" + tokens[size_t(merges[1].second)], " |a");
  EXPECT_EQ(tokens[size_t(merges[2].first)] + "|" + tokens[size_t(merges[2].second)], "h|e");
}

TEST_F(HfGpt2, FilesHoldTheWholeVocabularyAndEveryMerge) {
  auto f = files_of("gpt2", 1024);
  const auto vocab = nlohmann::json::parse(f.at("vocab.json"));
  ASSERT_EQ(vocab.size(), 50257u);
  EXPECT_EQ(vocab.at("<|endoftext|>"), 50256);
  EXPECT_EQ(vocab.at("\xC4\xA0the"), 262);  // " the"
  std::set<int> ids;
  for (auto& [k, v] : vocab.items()) ids.insert(v.get<int>());
  EXPECT_EQ(ids.size(), 50257u);
  EXPECT_EQ(*ids.begin(), 0);
  EXPECT_EQ(*ids.rbegin(), 50256);
  const std::string& m = f.at("merges.txt");
  EXPECT_EQ(m.rfind("#version: 0.2\n\xC4\xA0 t\n\xC4\xA0 a\nh e\n", 0), 0u) << m.substr(0, 40);
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 50001);
  const auto cfg = nlohmann::json::parse(f.at("tokenizer_config.json"));
  EXPECT_EQ(cfg.at("eos_token"), "<|endoftext|>");
  EXPECT_EQ(cfg.at("model_max_length"), 1024);
}

}  // namespace
}  // namespace mc
