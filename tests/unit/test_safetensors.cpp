// The safetensors writer (header JSON, length prefix, padding, offsets, data) checked byte by byte, the
// checked reader against hostile headers, and the Hugging Face GPT-2 mapping (names, shapes, Conv1D
// transposes, wte cut to V rows, no lm_head).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../gtest_util.h"
#include "core/errors.h"
#include "model/gpt2.h"
#include "model/safetensors.h"
#include "../test_util.h"

using namespace mc;
using mc::test::expect_usage;
namespace fs = std::filesystem;

namespace {

std::string scratch() { return mc::test::test_scratch("safetensors"); }

std::string slurp(const std::string& p) {
  std::ifstream i(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(i), {});
}

void spit(const std::string& p, const std::string& bytes) {
  std::ofstream o(p, std::ios::binary);
  o.write(bytes.data(), std::streamsize(bytes.size()));
}

// A file with this header text and `data` bytes after it.
std::string raw_file(const std::string& p, const std::string& header, size_t data) {
  const uint64_t n = header.size();
  std::string b(reinterpret_cast<const char*>(&n), 8);
  spit(p, b + header + std::string(data, '\0'));
  return p;
}

ModelConfig small() { return test::model_config(8, 50, 2, 2, 4, 64); }

}  // namespace

TEST(Safetensors, WriterLayoutByteByByte) {
  const std::string d = scratch(), p = d + "/t.safetensors";
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {-1.5f}, e;
  write_safetensors(p, {{"a", {2, 3}, a.data()}, {"b.bias", {1}, b.data()}, {"empty", {0, 4}, e.data()}},
                    {{"format", "pt"}, {"note", "x"}});
  const std::string f = slurp(p);
  ASSERT_GE(f.size(), 8u);
  uint64_t n = 0;
  std::memcpy(&n, f.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-aligned";
  ASSERT_EQ(f.size(), 8 + n + (6 + 1) * 4);
  const std::string header = f.substr(8, n);
  // Padding is spaces after the JSON object, nothing else.
  const size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos);
  EXPECT_LT(header.size() - close - 1, 8u);
  const nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "pt");
  EXPECT_EQ(j["__metadata__"]["note"], "x");
  EXPECT_EQ(j["a"]["dtype"], "F32");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["b.bias"]["data_offsets"], nlohmann::json({24, 28}));
  EXPECT_EQ(j["empty"]["shape"], nlohmann::json({0, 4}));
  EXPECT_EQ(j["empty"]["data_offsets"], nlohmann::json({28, 28}));
  EXPECT_EQ(j.size(), 4u);
  // The data, in the order given, right after the header.
  std::vector<float> data(7);
  std::memcpy(data.data(), f.data() + 8 + n, 28);
  EXPECT_EQ(data, (std::vector<float>{1, 2, 3, 4, 5, 6, -1.5f}));
  // Headers of every length mod 8 are padded (names of 1..8 characters shift the length).
  for (int k = 1; k <= 8; ++k) {
    const std::string h = safetensors_header({{std::string(size_t(k), 'x'), {1}, b.data()}}, {});
    EXPECT_EQ((8 + h.size()) % 8, 0u) << k;
    EXPECT_FALSE(nlohmann::json::parse(h).contains("__metadata__"));
  }
}

TEST(Safetensors, ReaderRoundTrip) {
  const std::string d = scratch(), p = d + "/t.safetensors";
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {-1.5f, 0.25f};
  write_safetensors(p, {{"w", {3, 2}, a.data()}, {"b", {2}, b.data()}}, {{"format", "pt"}});
  const SafetensorsFile f = read_safetensors_header(p, "");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name, "w");  // in data order
  EXPECT_EQ(f.tensors[0].shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(f.tensors[1].begin, 24u);
  EXPECT_EQ(f.data_offset % 8, 0u);
  EXPECT_EQ(read_safetensor_f32(f, "w"), a);
  EXPECT_EQ(read_safetensor_f32(f, "b"), b);
  expect_usage([&] { read_safetensor_f32(f, "nope"); }, {"nope"});
  // Duplicate or reserved names are refused by the writer.
  expect_usage([&] { write_safetensors(d + "/dup", {{"w", {1}, a.data()}, {"w", {1}, a.data()}}, {}); }, {"twice"});
  expect_usage([&] { write_safetensors(d + "/meta", {{"__metadata__", {1}, a.data()}}, {}); }, {"__metadata__"});
}

// A metadata value that is not UTF-8 (a source file's name) is written as valid JSON, never an exception.
TEST(Safetensors, MetadataThatIsNotUtf8) {
  const std::string d = scratch(), p = d + "/m.safetensors";
  const std::vector<float> a = {1};
  write_safetensors(p, {{"a", {1}, a.data()}}, {{"minicolossus.source", "m\xff.bin"}});
  const SafetensorsFile f = read_safetensors_header(p, "");
  EXPECT_EQ(f.metadata.at("minicolossus.source"), "m\xef\xbf\xbd.bin");  // U+FFFD
  EXPECT_EQ(read_safetensor_f32(f, "a"), a);
}

TEST(Safetensors, HostileFilesAreRefused) {
  const std::string d = scratch();
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(read_safetensors_header(raw_file(d + "/ok", ok, 8), ""));
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {ok, 4, "outside"},                                                                   // truncated data
      {ok, 12, "trailing"},                                                                 // trailing bytes
      {"[1,2]", 0, "not a JSON object"},
      {"{not json", 0, "not a JSON object"},
      {R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", 8, "unknown dtype"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "need"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "not a size"},
      {R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, "not a size"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8, "need more"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "outside"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, "data_offsets"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8, "outside"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "hole"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "overlap"},
      {R"({"__metadata__":{"format":1}})", 0, "not a string"},
      {R"({"a":5})", 0, "needs"},
  };
  int k = 0;
  for (const auto& c : cases) {
    const std::string p = raw_file(d + "/h" + std::to_string(k++), c.header, c.data);
    SCOPED_TRACE(c.header);
    expect_usage([&] { read_safetensors_header(p, "--x"); }, {"--x " + p, c.expect});
  }
  // A length prefix larger than the file, or absurd, or no prefix at all.
  std::string big(8, '\0');
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(big.data(), &huge, 8);
  spit(d + "/huge", big + "{}");
  expect_usage([&] { read_safetensors_header(d + "/huge", ""); }, {d + "/huge", "header of"});
  const uint64_t over = 100;
  std::memcpy(big.data(), &over, 8);
  spit(d + "/over", big + "{}");
  expect_usage([&] { read_safetensors_header(d + "/over", ""); }, {d + "/over", "truncated"});
  spit(d + "/short", "abc");
  expect_usage([&] { read_safetensors_header(d + "/short", ""); }, {d + "/short", "truncated"});
  expect_usage([&] { read_safetensors_header(d, "--x"); }, {"--x " + d, "directory"});
  const std::string fifo = d + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  expect_usage([&] { read_safetensors_header(fifo, "--x"); }, {"FIFO"});
}

TEST(Safetensors, HuggingFaceGpt2Mapping) {
  const ModelConfig c = small();
  const ParamLayout lay = make_layout(c);
  std::vector<float> w(lay.total);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i);  // every value names its position
  std::vector<std::vector<float>> storage;
  const auto t = hf_gpt2_tensors(c, w, &storage);
  ASSERT_EQ(t.size(), 4u + 12u * size_t(c.num_layers));
  auto find = [&](const std::string& n) -> const SafeTensorOut& {
    for (const auto& x : t)
      if (x.name == n) return x;
    ADD_FAILURE() << "no " << n;
    return t[0];
  };
  for (const auto& x : t) EXPECT_EQ(x.name.find("lm_head"), std::string::npos);  // tied: not stored
  const int64_t C = c.channels;
  // wte: V rows, not Vp.
  EXPECT_EQ(find("transformer.wte.weight").shape, (std::vector<int64_t>{c.vocab_size, C}));
  EXPECT_EQ(find("transformer.wte.weight").data, w.data() + lay.find("wte").offset);
  EXPECT_EQ(find("transformer.wpe.weight").shape, (std::vector<int64_t>{c.max_seq_len, C}));
  EXPECT_EQ(find("transformer.ln_f.bias").data, w.data() + lay.find("lnf.b").offset);
  // Conv1D weights: (in, out) = transpose of ours (out, in).
  struct W {
    const char *hf, *ours;
    int64_t out, in;
  };
  for (const W& x : {W{"attn.c_attn.weight", "qkvw", 3 * C, C}, W{"attn.c_proj.weight", "attprojw", C, C},
                     W{"mlp.c_fc.weight", "fcw", 4 * C, C}, W{"mlp.c_proj.weight", "fcprojw", C, 4 * C}}) {
    const SafeTensorOut& h = find(std::string("transformer.h.1.") + x.hf);
    ASSERT_EQ(h.shape, (std::vector<int64_t>{x.in, x.out})) << x.hf;
    const float* ours = w.data() + lay.find(std::string("h.1.") + x.ours).offset;
    for (int64_t i = 0; i < x.in; ++i)
      for (int64_t o = 0; o < x.out; ++o) ASSERT_EQ(h.data[i * x.out + o], ours[o * x.in + i]) << x.hf;
  }
  EXPECT_EQ(find("transformer.h.0.attn.c_attn.bias").shape, (std::vector<int64_t>{3 * C}));
  EXPECT_EQ(find("transformer.h.0.mlp.c_fc.bias").data, w.data() + lay.find("h.0.fcb").offset);
  EXPECT_EQ(find("transformer.h.1.ln_2.weight").data, w.data() + lay.find("h.1.ln2w").offset);

  const nlohmann::json j = nlohmann::json::parse(hf_gpt2_config_json(c));
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_EQ(j["architectures"], nlohmann::json({"GPT2LMHeadModel"}));
  EXPECT_EQ(j["vocab_size"], c.vocab_size);
  EXPECT_EQ(j["n_positions"], c.max_seq_len);
  EXPECT_EQ(j["n_embd"], c.channels);
  EXPECT_EQ(j["n_layer"], c.num_layers);
  EXPECT_EQ(j["n_head"], c.num_heads);
  EXPECT_EQ(j["activation_function"], "gelu_new");
  EXPECT_EQ(j["layer_norm_epsilon"], 1e-5);
  EXPECT_EQ(j["tie_word_embeddings"], true);
  EXPECT_TRUE(j["eos_token_id"].is_null());  // not the GPT-2 vocabulary
  ModelConfig g = c;
  g.vocab_size = 50257;
  g.padded_vocab_size = 50304;
  EXPECT_EQ(nlohmann::json::parse(hf_gpt2_config_json(g))["eos_token_id"], 50256);
}

TEST(Safetensors, WriteHfDirectory) {
  const std::string d = scratch(), out = d + "/hf";
  const ModelConfig c = small();
  std::vector<float> w(make_layout(c).total);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(float(i));
  EXPECT_EQ(write_hf_gpt2(out, c, w, {{"minicolossus.step", "7"}}, ""),
            (std::vector<std::string>{"model.safetensors", "config.json"}));
  const SafetensorsFile f = read_safetensors_header(out + "/model.safetensors", "");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("minicolossus.step"), "7");
  uint64_t total = 0;
  for (const auto& t : f.tensors) total += t.numel();
  // Every parameter but the padded wte rows.
  EXPECT_EQ(total, w.size() - size_t(c.padded_vocab_size - c.vocab_size) * size_t(c.channels));
  EXPECT_EQ(read_safetensor_f32(f, "transformer.ln_f.weight"),
            std::vector<float>(w.begin() + std::ptrdiff_t(make_layout(c).find("lnf.w").offset),
                               w.begin() + std::ptrdiff_t(make_layout(c).find("lnf.w").offset + 4)));
  EXPECT_TRUE(nlohmann::json::parse(slurp(out + "/config.json")).is_object());
  // An existing directory is written into again; the byte tokenizer's files come with it.
  EXPECT_EQ(write_hf_gpt2(out, c, w, {}, "byte"),
            (std::vector<std::string>{"model.safetensors", "config.json", "vocab.json", "merges.txt",
                                      "tokenizer_config.json"}));
  EXPECT_EQ(nlohmann::json::parse(slurp(out + "/vocab.json")).size(), 256u);
  // A target that cannot be written is refused before anything is written.
  ::mkdir((d + "/hf2").c_str(), 0755);
  ::mkdir((d + "/hf2/merges.txt").c_str(), 0755);
  expect_usage([&] { write_hf_gpt2(d + "/hf2", c, w, {}, "byte"); }, {"--out " + d + "/hf2/merges.txt"});
  EXPECT_NE(::access((d + "/hf2/model.safetensors").c_str(), F_OK), 0);
  spit(d + "/file", "x");
  expect_usage([&] { write_hf_gpt2(d + "/file", c, w, {}, ""); }, {"--out " + d + "/file", "not a directory"});
  expect_usage([&] { write_hf_gpt2(d + "/no/such", c, w, {}, ""); }, {"--out " + d + "/no/such", "cannot create"});
}
