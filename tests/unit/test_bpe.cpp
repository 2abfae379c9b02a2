// GPT-2's BPE tokenizer (src/data/bpe.h): ids pinned from tiktoken (tests/data/gpt2_vectors.json, written
// by scripts/check_tokenizer.py --write-vectors), round trips on any bytes, the merge loop against a
// direct transcription of tiktoken's, the ranks file's checks and lookup, and prepare/sample wiring.
// Needs the ranks file scripts/setup.sh fetches; without it every test here is skipped, saying so.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "data/bpe.h"
#include "data/data.h"
#include "../gtest_util.h"

namespace mc {
namespace {

namespace fs = std::filesystem;
using test::expect_usage;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& s) {
  std::ofstream(path, std::ios::binary).write(s.data(), std::streamsize(s.size()));
}

// Sets an environment variable for one scope, restoring what was there.
struct EnvVar {
  std::string name;
  bool had = false;
  std::string old;
  EnvVar(const std::string& n, const char* value) : name(n) {
    if (const char* v = std::getenv(n.c_str())) {
      had = true;
      old = v;
    }
    if (value)
      ::setenv(n.c_str(), value, 1);
    else
      ::unsetenv(n.c_str());
  }
  ~EnvVar() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

class Bpe : public testing::Test {
 protected:
  void SetUp() override {
    ranks_ = find_gpt2_ranks();
    struct stat st {};
    if (ranks_.empty() || ::stat(ranks_.c_str(), &st) != 0)
      GTEST_SKIP() << "GPT-2's BPE ranks (gpt2.tiktoken) are not here: run scripts/setup.sh";
    bpe_ = &gpt2_bpe();
  }
  std::string ranks_;
  const Gpt2Bpe* bpe_ = nullptr;
};

std::vector<uint16_t> encode16(const Gpt2Bpe& b, const std::string& s) {
  std::vector<uint16_t> out;
  b.encode(s, out);
  return out;
}

// ---- agreement with tiktoken -------------------------------------------------------------------

TEST_F(Bpe, MatchesTiktokenVectors) {
  const std::string path = std::string(MC_SOURCE_DIR) + "/tests/data/gpt2_vectors.json";
  const nlohmann::json j = nlohmann::json::parse(read_bytes(path));
  const auto& vecs = j.at("vectors");
  ASSERT_GE(vecs.size(), 15u);
  std::set<std::string> names;
  for (const auto& v : vecs) {
    const std::string name = v.at("name"), text = v.at("text");
    names.insert(name);
    const std::vector<int> want = v.at("ids").get<std::vector<int>>();
    EXPECT_EQ(bpe_->encode(text), want) << name;
    EXPECT_EQ(bpe_->decode(want), text) << name;
  }
  // Every class of tricky text the tokenizer must get right is among them.
  for (const char* n : {"accents", "cjk", "emoji", "digits", "spaces", "newlines", "trailing_spaces",
                        "unicode_spaces", "contractions_upper", "special_text", "kjv_genesis_1"})
    EXPECT_EQ(names.count(n), 1u) << n;
}

TEST_F(Bpe, KnownIds) {
  EXPECT_EQ(bpe_->encode("Hello world"), (std::vector<int>{15496, 995}));
  // tiktoken's encode_ordinary: the special token's text is plain text.
  const std::vector<int> eot = bpe_->encode("<|endoftext|>");
  EXPECT_EQ(eot, (std::vector<int>{27, 91, 437, 1659, 5239, 91, 29}));
  // U+180E is not white space (Unicode 6.3+, as tiktoken has it), unlike PCRE2's own \s: the space
  // before it joins it instead of standing alone.
  EXPECT_EQ(bpe_->encode("x \xe1\xa0\x8e" "a"), (std::vector<int>{87, 28053, 254, 236, 64}));
  EXPECT_EQ(bpe_->encode("x \xc2\x85" "a"), (std::vector<int>{87, 220, 126, 227, 64}));  // U+0085 is
  EXPECT_TRUE(bpe_->encode("").empty());
  EXPECT_EQ(bpe_->decode({kGpt2EndOfText}), "<|endoftext|>");
  EXPECT_EQ(bpe_->decode({15496, 50257, -1, 995}), "Hello<50257><-1> world");
}

// ---- the merge loop ----------------------------------------------------------------------------

// tiktoken's byte_pair_merge as written there: rescan for the lowest rank (leftmost on a tie) after
// every merge. The reference for the heap version in bpe.cpp.
std::vector<int> reference_bpe(const std::map<std::string, int>& ranks, const std::string& piece) {
  if (auto it = ranks.find(piece); it != ranks.end()) return {it->second};
  auto rank = [&](size_t a, size_t b) {
    auto it = ranks.find(piece.substr(a, b - a));
    return it == ranks.end() ? INT32_MAX : it->second;
  };
  std::vector<size_t> cut;  // part starts, then piece.size()
  for (size_t i = 0; i <= piece.size(); ++i) cut.push_back(i);
  for (;;) {
    int best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 2 < cut.size(); ++i) {
      const int r = rank(cut[i], cut[i + 2]);
      if (r < best) best = r, at = i;
    }
    if (best == INT32_MAX) break;
    cut.erase(cut.begin() + ptrdiff_t(at) + 1);
  }
  std::vector<int> out;
  for (size_t i = 0; i + 1 < cut.size(); ++i) out.push_back(rank(cut[i], cut[i + 1]));
  return out;
}

TEST_F(Bpe, MergeLoopMatchesTiktokensAlgorithm) {
  std::map<std::string, int> ranks;
  std::vector<std::string> toks;
  for (int i = 0; i < kGpt2MergeableRanks; ++i) {
    toks.push_back(bpe_->decode({i}));
    ranks[toks.back()] = i;
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    // Pieces made of token fragments merge in many competing ways; repeats make rank ties.
    std::string piece;
    const int parts = 1 + int(rng() % 8);
    for (int k = 0; k < parts; ++k) {
      const std::string& t = toks[rng() % toks.size()];
      piece += trial % 3 == 0 ? t : t.substr(rng() % t.size());
    }
    if (trial % 5 == 0) piece += piece;
    std::vector<uint16_t> got;
    bpe_->encode_piece(piece, got);
    ASSERT_EQ(std::vector<int>(got.begin(), got.end()), reference_bpe(ranks, piece)) << "piece: " << piece;
  }
  for (const std::string piece : {"aaaaaaaaaaaaaaaaaaaaaaaaaa", "          ", "!!!!!!!!!!!!", "0000000000000000"}) {
    std::vector<uint16_t> got;
    bpe_->encode_piece(piece, got);
    EXPECT_EQ(std::vector<int>(got.begin(), got.end()), reference_bpe(ranks, piece)) << piece;
  }
}

// ---- any bytes -----------------------------------------------------------------------------------

TEST_F(Bpe, RoundTripsAnyBytes) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  std::mt19937 rng(3);
  std::string random(1 << 16, '\0');
  for (char& c : random) c = char(rng() & 0xff);
  // Valid text broken by bytes that are not UTF-8: lone continuation bytes, a truncated sequence, an
  // overlong encoding, a surrogate, a code point past U+10FFFF.
  const std::string broken = "caf\xc3\xa9 \x80\x80 na\xc3 \xe6\x97\xa5\xe6\x9c \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 ok\n";
  for (const std::string& s : {all, random, broken, std::string("\0\0 a\0b", 6)}) {
    const std::vector<int> ids = bpe_->encode(s);
    for (int id : ids) ASSERT_TRUE(id >= 0 && id < kGpt2EndOfText) << id;
    EXPECT_EQ(bpe_->decode(ids), s);
  }
  // The valid parts are cut as usual: "caf\xc3\xa9" is encoded as it is alone.
  const std::vector<int> cafe = bpe_->encode("caf\xc3\xa9");
  const std::vector<int> got = bpe_->encode(broken);
  EXPECT_TRUE(std::equal(cafe.begin(), cafe.end(), got.begin()));
}

TEST_F(Bpe, LongPiecesAreFast) {
  // One piece each, megabytes long: the merge loop must not be quadratic (Note [BPE in n log n]); the
  // last is longer than the longest piece merged whole.
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::string& s : {std::string(1 << 20, 'a'), std::string(1 << 20, ' '), std::string(1 << 20, '!'),
                               std::string(1 << 20, '7'), std::string((1 << 20) + 4097, 'z')}) {
    const std::vector<int> ids = bpe_->encode(s);
    EXPECT_EQ(bpe_->decode(ids), s);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 20.0) << "4 MB in one-piece runs took " << secs << " s";
}

TEST_F(Bpe, ProgressReachesTheEnd) {
  std::string text;
  while (text.size() < 2000000) text += "And God said, Let there be light: and there was light. ";
  std::vector<size_t> calls;
  std::vector<uint16_t> out;
  bpe_->encode(text, out, [&](size_t done) { calls.push_back(done); });
  ASSERT_GE(calls.size(), 2u);
  EXPECT_TRUE(std::is_sorted(calls.begin(), calls.end()));
  EXPECT_EQ(calls.back(), text.size());
}

// ---- the ranks file ------------------------------------------------------------------------------

TEST_F(Bpe, RefusesBadRanksFiles) {
  const std::string d = test::test_scratch("bpe");
  const std::string good = read_bytes(ranks_);
  ASSERT_EQ(good.size(), 835554u);
  std::string edited = good;
  edited[100] = edited[100] == 'A' ? 'B' : 'A';
  const std::string bad = d + "/edited.tiktoken";
  write_bytes(bad, edited);
  expect_usage([&] { Gpt2Bpe::load(bad); }, {bad, "sha256", kGpt2RanksSha256});
  write_bytes(d + "/truncated.tiktoken", good.substr(0, good.size() / 2));
  expect_usage([&] { Gpt2Bpe::load(d + "/truncated.tiktoken"); }, {d + "/truncated.tiktoken", "sha256"});
  write_bytes(d + "/empty.tiktoken", "");
  expect_usage([&] { Gpt2Bpe::load(d + "/empty.tiktoken"); }, {d + "/empty.tiktoken", "sha256"});
  std::string garbage(4096, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = char(i * 131 + 7);
  write_bytes(d + "/garbage.tiktoken", garbage);
  expect_usage([&] { Gpt2Bpe::load(d + "/garbage.tiktoken"); }, {d + "/garbage.tiktoken", "sha256"});
  expect_usage([&] { Gpt2Bpe::load(d); }, {d, "not a regular file"});
  expect_usage([&] { Gpt2Bpe::load(d + "/none"); }, {d + "/none", "cannot open"});
  // The same through MC_GPT2_TIKTOKEN, as prepare, sample and train load it.
  {
    EnvVar e("MC_GPT2_TIKTOKEN", bad.c_str());
    expect_usage([] { gpt2_bpe(); }, {"MC_GPT2_TIKTOKEN " + bad, "sha256"});
    expect_usage([] { encode_prompt("gpt2", "hi"); }, {bad, "sha256"});
    expect_usage([] { decode_tokens("gpt2", "", {1}); }, {bad, "sha256"});
    write_bytes(d + "/in.txt", "some text");
    expect_usage([&] { prepare_text(d + "/in.txt", d + "/out", "gpt2"); }, {bad, "sha256"});
    EXPECT_FALSE(fs::exists(d + "/out"));
  }
  {
    EnvVar e("MC_GPT2_TIKTOKEN", (d + "/none").c_str());
    expect_usage([] { gpt2_bpe(); }, {"MC_GPT2_TIKTOKEN " + d + "/none", "cannot open"});
  }
  // A good copy anywhere is accepted.
  write_bytes(d + "/copy.tiktoken", good);
  EXPECT_EQ(Gpt2Bpe::load(d + "/copy.tiktoken")->encode("Hello world"), (std::vector<int>{15496, 995}));
}

TEST_F(Bpe, LookupOrder) {
  const std::string d = test::test_scratch("bpe");
  const std::string good = read_bytes(ranks_);
  EnvVar no_env("MC_GPT2_TIKTOKEN", nullptr);
  EnvVar cache("MC_CACHE_DIR", (d + "/scratch_cache").c_str());
  EnvVar xdg("XDG_CACHE_HOME", (d + "/xdg").c_str());
  if (!bundled_share_file("gpt2.tiktoken").empty()) GTEST_SKIP() << "a bundle's copy comes first here";
  EXPECT_EQ(find_gpt2_ranks(), "");
  expect_usage([] { gpt2_bpe(); }, {"--tokenizer gpt2", "scripts/setup.sh"});
  // MC_CACHE_DIR (a test's scratch cache) lacks it: the user's cache has it.
  fs::create_directories(d + "/xdg/minicolossus");
  write_bytes(d + "/xdg/minicolossus/gpt2.tiktoken", good);
  EXPECT_EQ(find_gpt2_ranks(), d + "/xdg/minicolossus/gpt2.tiktoken");
  // MC_CACHE_DIR's own copy comes first.
  fs::create_directories(d + "/scratch_cache");
  write_bytes(d + "/scratch_cache/gpt2.tiktoken", good);
  EXPECT_EQ(find_gpt2_ranks(), d + "/scratch_cache/gpt2.tiktoken");
  EXPECT_EQ(gpt2_bpe().path(), d + "/scratch_cache/gpt2.tiktoken");
  // MC_GPT2_TIKTOKEN before all.
  EnvVar env("MC_GPT2_TIKTOKEN", "/elsewhere/gpt2.tiktoken");
  EXPECT_EQ(find_gpt2_ranks(), "/elsewhere/gpt2.tiktoken");
}

// The line format, shared with `info` (no ranks file needed).
TEST(TiktokenLine, Parses) {
  std::string bytes;
  uint64_t rank = 0;
  EXPECT_TRUE(parse_tiktoken_line("SGVsbG8= 15496", &bytes, &rank));
  EXPECT_EQ(bytes, "Hello");
  EXPECT_EQ(rank, 15496u);
  EXPECT_TRUE(parse_tiktoken_line("IA== 999999999999", &bytes, &rank));
  EXPECT_EQ(bytes, " ");
  EXPECT_EQ(rank, 999999999999u);
  for (const char* bad : {"", "SGVsbG8=", "SGVsbG8= ", "SGVsbG8 1", "SGVsbG8= x", "SGVsbG8= -1", "SGVsbG8= 1 ",
                          "SGVsbG8= 1234567890123", "S?Vs 1", " 1", "==== 1", "A=== 1", "AA=A 1", "A=AA 1"})
    EXPECT_FALSE(parse_tiktoken_line(bad, &bytes, &rank)) << bad;
}

// ---- prepare and sample ----------------------------------------------------------------------------

TEST_F(Bpe, PrepareWritesGpt2Shards) {
  const std::string d = test::test_scratch("bpe");
  std::string text;
  for (int i = 0; text.size() < 30000; ++i) text += "Verse " + std::to_string(i) + ": caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac  \n";
  write_bytes(d + "/in.txt", text);
  testing::internal::CaptureStdout();
  prepare_text(d + "/in.txt", d + "/out", "gpt2", 0.1);
  const std::string said = testing::internal::GetCapturedStdout();
  EXPECT_NE(said.find("gpt2 tokenizer, vocab 50257"), std::string::npos) << said;
  const DataDir dd = open_data_dir(d + "/out");
  EXPECT_EQ(dd.tokenizer, "gpt2");
  EXPECT_EQ(dd.vocab_size, kGpt2Vocab);
  ASSERT_EQ(dd.train_files.size(), 1u);
  ASSERT_EQ(dd.val_files.size(), 1u);
  std::vector<uint16_t> all = TokenShard(dd.train_files[0], kGpt2Vocab).read_all();
  const std::vector<uint16_t> val = TokenShard(dd.val_files[0], kGpt2Vocab).read_all();
  EXPECT_EQ(val.size(), std::max<size_t>(size_t(1025), (all.size() + val.size()) / 10));
  all.insert(all.end(), val.begin(), val.end());
  // <|endoftext|>, then the text (Note [One document] in prepare.cpp).
  std::vector<uint16_t> want{uint16_t(kGpt2EndOfText)};
  const std::vector<uint16_t> body = encode16(*bpe_, text);
  want.insert(want.end(), body.begin(), body.end());
  EXPECT_EQ(all, want);
  EXPECT_EQ(read_bytes(d + "/out/tokenizer.json"), "{\"tokenizer\":\"gpt2\",\"vocab_size\":50257}\n");
}

TEST_F(Bpe, PromptAndSampleText) {
  const std::string text = "In the beginning God created the heaven and the earth.";
  const std::vector<int> ids = encode_prompt("gpt2", text);
  EXPECT_EQ(ids, bpe_->encode(text));
  EXPECT_EQ(decode_tokens("gpt2", "", ids), text);
  EXPECT_EQ(decode_tokens("gpt2", test::test_scratch("bpe"), {kGpt2EndOfText, 50300}), "<|endoftext|><50300>");
  EXPECT_TRUE(encode_prompt("gpt2", "").empty());
}

uint64_t fnv1a(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(data)[i]) * 0x100000001b3ull;
  return h;
}

TEST_F(Bpe, DefaultCorpusGpt2) {
  if (!default_corpus_available()) GTEST_SKIP() << "no bible-kjv here (scripts/setup.sh installs it)";
  const std::string d = test::test_scratch("bpe");
  EnvVar cache("MC_CACHE_DIR", d.c_str());
  const std::string dir = default_data_dir("gpt2");
  EXPECT_EQ(dir, d + "/kjv-gpt2");
  const DataDir dd = open_data_dir(dir);
  EXPECT_EQ(dd.tokenizer, "gpt2");
  EXPECT_EQ(dd.vocab_size, kGpt2Vocab);
  std::vector<uint16_t> ids = TokenShard(dd.train_files.at(0), kGpt2Vocab).read_all();
  const std::vector<uint16_t> val = TokenShard(dd.val_files.at(0), kGpt2Vocab).read_all();
  ids.insert(ids.end(), val.begin(), val.end());
  ASSERT_EQ(ids.at(0), kGpt2EndOfText);
  ids.erase(ids.begin());
  const std::string text = bpe_->decode(std::vector<int>(ids.begin(), ids.end()));
  // Debian 12's bible-kjv text: tiktoken 0.14 gives 1,141,844 tokens; these are its ids' FNV-1a
  // (uint16 little-endian), from scripts/check_tokenizer.py's comparison.
  if (text.size() == 4298239) {
    EXPECT_EQ(fnv1a(text.data(), text.size()), 0x21be438cea8082f0ull) << "not the text bible-kjv prints";
    EXPECT_EQ(ids.size(), 1141844u);
    EXPECT_EQ(fnv1a(ids.data(), ids.size() * 2), 0x50bc4c74a8a3a00bull) << "ids differ from tiktoken's";
  } else {
    std::printf("note: this bible-kjv text (%zu bytes) is not Debian 12's: ids not compared\n", text.size());
  }
  // Ready now: a second call finds it as it is (and the byte corpus is a different directory).
  const auto mtime = fs::last_write_time(dir + "/tokenizer.json");
  EXPECT_EQ(default_data_dir("gpt2"), dir);
  EXPECT_EQ(fs::last_write_time(dir + "/tokenizer.json"), mtime);
}

}  // namespace
}  // namespace mc
