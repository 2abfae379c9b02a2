// The user-facing subcommands eval, sample, export, prepare (train: cmd_train.cpp). Each parses its own flags with
// CLI11 and returns the process exit code (0 ok, 2 bad usage or input, 1 runtime failure).
// Invariant: errors are reported as one line on stderr; under several ranks, an error every rank
// sees is printed by rank 0 only, and an error of one rank aborts the job instead of hanging it.
#include "train/commands.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>

#include "core/errors.h"
#include "core/files.h"
#include "data/data.h"
#include "dist/comm.h"
#include "model/generate.h"
#include "model/gpt2.h"
#include "model/llmc_io.h"
#include "model/safetensors.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace mc {

int this_rank() { return error_rank() >= 0 ? error_rank() : 0; }

void report_error(const std::exception& e) {
  // One line whatever the message quotes (a file name or a tensor name from a file may hold a newline).
  std::fprintf(stderr, "minicolossus: %s\n", one_line(e.what()).c_str());
  std::fflush(stderr);
}

// Note [Numbers on the command line]
// CLI11 (2.1) converts integers with strtoll(s, 0): "010" is 8 (octal) and "0x10" is 16, an empty
// value is silently 0, "-1" for an unsigned option wraps to 2^64-1, an unsigned value past 2^64 is
// clamped without error, and leading blanks are skipped while trailing ones are refused. So every
// number flag of every command (its type name is INT, UINT or FLOAT) is first checked here: plain
// decimal only (a sign, digits; for FLOAT also a fraction and an exponent), an integer within 64
// bits; leading zeros of an integer are dropped so that "010" means ten. nan, inf and values past
// the float range are let through to each flag's own range check, which names the value.
// The error is a UsageError "<flag> <value>: ..." (not CLI11's ValidationError, which CLI11 would
// word itself).
namespace {
void check_number(std::string& s, const std::string& flag, const std::string& type) {
  const bool is_float = type.rfind("FLOAT", 0) == 0, is_unsigned = type.rfind("UINT", 0) == 0;
  const char* want = is_float      ? "a decimal number"
                     : is_unsigned ? "a whole number >= 0 in decimal"
                                   : "a whole number in decimal";
  if (s.empty()) throw UsageError(strfmt("%s: empty value (expected %s)", flag.c_str(), want));
  const auto bad = [&] { return UsageError(strfmt("%s %s: not %s", flag.c_str(), s.c_str(), want)); };
  size_t i = 0;
  if (s[0] == '+' || s[0] == '-') ++i;
  if (is_unsigned && s[0] == '-') throw bad();
  if (is_float) {
    std::string rest = s.substr(i);
    for (char& ch : rest) ch = char(std::tolower((unsigned char)ch));
    if (rest == "nan" || rest == "inf" || rest == "infinity") return;  // for the flag's range check to name
  }
  const size_t digits_at = i;
  while (i < s.size() && std::isdigit((unsigned char)s[i])) ++i;
  size_t digits = i - digits_at;
  if (is_float) {
    if (i < s.size() && s[i] == '.') {
      const size_t f = ++i;
      while (i < s.size() && std::isdigit((unsigned char)s[i])) ++i;
      digits += i - f;
    }
    if (digits > 0 && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      size_t j = i + 1;
      if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
      const size_t e = j;
      while (j < s.size() && std::isdigit((unsigned char)s[j])) ++j;
      if (j > e) i = j;
    }
  }
  if (digits == 0 || i != s.size()) throw bad();
  if (is_float) return;
  // Drop leading zeros (keeping one digit), so that CLI11's base-0 conversion reads decimal.
  size_t z = digits_at;
  while (z + 1 < s.size() && s[z] == '0') ++z;
  s.erase(digits_at, z - digits_at);
  errno = 0;
  if (is_unsigned) std::strtoull(s.c_str(), nullptr, 10);
  else std::strtoll(s.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(strfmt("%s %s: out of range", flag.c_str(), s.c_str()));
}
}  // namespace

int parse_flags(CLI::App& app, int argc, char** argv, std::exception_ptr* err) {
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_items_expected_max() == 0) continue;  // a flag: no value to check
    const std::string type = opt->get_type_name();
    if (type.rfind("INT", 0) != 0 && type.rfind("UINT", 0) != 0 && type.rfind("FLOAT", 0) != 0) continue;
    const std::string flag = opt->get_name();
    // A UsageError thrown by a validator passes through CLI11 (which only catches its own errors).
    opt->transform(CLI::Validator(
        [flag, type](std::string& s) {
          check_number(s, flag, type);
          return std::string();
        },
        "", "decimal"));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    if (this_rank() == 0) std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    *err = std::make_exception_ptr(UsageError(strfmt("%s: %s (see --help)", app.get_name().c_str(), e.what())));
  } catch (const UsageError&) {  // check_number
    *err = std::current_exception();
  }
  return -1;
}

int parse(CLI::App& app, int argc, char** argv) {
  std::exception_ptr err;
  const int rc = parse_flags(app, argc, argv, &err);
  if (err) std::rethrow_exception(err);  // a UsageError: main reports it (rank 0) and exits 2
  return rc;
}

std::string resolve_device(const std::string& d) {
  MC_REQUIRE(d == "cpu" || d == "cuda", "--device %s: unknown device (expected cpu or cuda)", d.c_str());
  return d;
}

// ---- the model a command reads: a checkpoint or an llm.c model file ---------------------------

namespace {

// Note [Checkpoint or model file]
// eval, sample and export read their weights from exactly one of --ckpt (our checkpoint: weights plus
// the run's metadata) or --model-file (an llm.c model file, fp32 version 3 or bf16 version 5: weights
// and shapes only, so eval then needs --data, and sample guesses the tokenizer from the vocabulary).
// The flag decides the format; a file given under the wrong flag is refused with a hint naming the
// right one, rather than silently read as the other kind.
struct ModelSource {
  ModelConfig cfg;
  std::vector<float> params;
  bool is_ckpt = false;
  nlohmann::json meta;  // checkpoint metadata (validated); null for a model file
  int llmc_version = 0;
  std::string path;
};

// The first 8 bytes of a file we could open (empty if shorter or unreadable), for the hints below.
std::string leading_bytes(const std::string& path) {
  try {
    const int fd = open_input_file(path, "");
    FdCloser closer(fd);
    std::string b(8, '\0');
    if (pread_full(fd, b.data(), 8, 0, path) != 8) return {};
    return b;
  } catch (const std::exception&) {
    return {};
  }
}

ModelSource load_model_source(CLI::App& app, const std::string& ckpt, const std::string& model_file) {
  const size_t n = app.count("--ckpt") + app.count("--model-file");
  MC_REQUIRE(n == 1, "%s: give exactly one of --ckpt and --model-file", app.get_name().c_str());
  ModelSource s;
  if (app.count("--ckpt")) {
    s.path = ckpt;
    s.is_ckpt = true;
    LoadedCheckpoint ck;
    try {
      ck = load_checkpoint(ckpt);  // metadata validated (Note [Checkpoint metadata is input])
    } catch (const UsageError&) {
      int32_t magic = 0;
      const std::string b = leading_bytes(ckpt);
      if (b.size() == 8) std::memcpy(&magic, b.data(), 4);
      if (magic == kLlmcModelMagic)
        throw UsageError("--ckpt " + ckpt + ": this is an llm.c model file, not a checkpoint; pass it as --model-file");
      throw;
    }
    s.cfg = checkpoint_model(ck);
    s.params = ck.get("params");
    s.meta = std::move(ck.meta);
  } else {
    s.path = model_file;
    try {
      LlmcModel m = read_llmc_model(model_file, "--model-file");
      s.cfg = m.cfg;
      s.params = std::move(m.params);
      s.llmc_version = m.version;
    } catch (const UsageError&) {
      if (leading_bytes(model_file) == "MCCKPT01")
        throw UsageError("--model-file " + model_file +
                         ": this is a minicolossus checkpoint, not an llm.c model file; pass it as --ckpt");
      throw;
    }
  }
  return s;
}

std::string describe(const ModelSource& s) {
  if (s.is_ckpt) return strfmt("%s, step %d", s.path.c_str(), s.meta.at("step").get<int>());
  return strfmt("%s, llm.c model v%d %s", s.path.c_str(), s.llmc_version,
                s.llmc_version == kLlmcBf16 ? "bf16" : "fp32");
}

// Note [export's --out]
// Checked before the model is loaded (a large checkpoint takes a while; the answer should not), for
// every format: the target must be a regular file or absent (hf: a directory or absent) in a
// directory we can write into. export replaces an earlier export, or any file of no kind we know, but
// never a file a run depends on: a checkpoint (its own --ckpt included: `export --ckpt C --out C`
// replaced the checkpoint by a model file), a token shard or an llm.c tokenizer. An llm.c model file
// may be replaced, itself included: it is read whole before the new file is renamed over it.
void check_not_precious(const std::string& path) {
  const std::string b = leading_bytes(path);
  if (b.size() < 8) return;
  int32_t magic = 0;
  std::memcpy(&magic, b.data(), 4);
  const char* kind = b == "MCCKPT01"                         ? "a minicolossus checkpoint"
                     : magic == kShardMagic                  ? "a token shard"
                     : uint32_t(magic) == kLlmcTokenizerMagic ? "an llm.c tokenizer"
                                                             : nullptr;
  if (kind)
    throw UsageError(strfmt("--out %s: is %s; export will not replace it (choose another path)", path.c_str(), kind));
}

void check_export_out(const std::string& out, const std::string& format) {
  MC_REQUIRE(!out.empty(), "--out: must not be empty");
  if (format != "hf") {
    check_output_path(out, "--out");  // absent or a regular file, in an existing directory
    check_not_precious(out);
    probe_writable_dir(parent_of(out), "--out " + out);
    return;
  }
  struct stat st {};
  if (::stat(out.c_str(), &st) != 0) {  // to be created (without parents) by write_hf_gpt2
    struct stat pst {};
    const int e = ::stat(parent_of(out).c_str(), &pst) != 0 ? errno : S_ISDIR(pst.st_mode) ? 0 : ENOTDIR;
    if (e != 0)
      throw UsageError(strfmt("--out %s: cannot create the directory: %s", out.c_str(), std::strerror(e)));
    probe_writable_dir(parent_of(out), "--out " + out);
    return;
  }
  MC_REQUIRE(S_ISDIR(st.st_mode), "--out %s: exists and is not a directory (%s)", out.c_str(),
             S_ISREG(st.st_mode) ? "a regular file" : file_kind(st.st_mode).c_str());
  for (const char* name : {"/model.safetensors", "/config.json"}) {
    check_output_path(out + name, "--out");
    check_not_precious(out + name);
  }
  probe_writable_dir(out, "--out " + out);
}

std::string model_flag(const ModelSource& s) { return (s.is_ckpt ? "--ckpt " : "--model-file ") + s.path; }

}  // namespace

// ---- eval ------------------------------------------------------------------------------------

int cmd_eval(int argc, char** argv) {
  std::string ckpt, model_file, data, device = "cpu";
  int batch = 8, max_seqs = 0, seq = 0;
  CLI::App app("Print the validation loss of a checkpoint or an llm.c model file.", "eval");
  app.add_option("--ckpt", ckpt, "checkpoint file");
  app.add_option("--model-file", model_file, "llm.c model file (fp32 version 3 or bf16 version 5); needs --data");
  app.add_option("--data", data, "data directory (default: the one the checkpoint was trained on)");
  app.add_option("--seq", seq, "tokens per sequence (default: the checkpoint's; model file: min(maxT, 1024))");
  app.add_option("--batch", batch, "sequences per forward pass")->capture_default_str();
  app.add_option("--max-seqs", max_seqs, "evaluate at most this many validation sequences (0: all)");
  app.add_option("--device", device, "cpu | cuda")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(batch > 0, "--batch %d: must be positive", batch);
  MC_REQUIRE(max_seqs >= 0, "--max-seqs %d: must be >= 0", max_seqs);
  MC_REQUIRE(app.count("--model-file") == 0 || !data.empty(),
             "--model-file: an llm.c model file records no data directory; pass --data");
  const ModelSource src = load_model_source(app, ckpt, model_file);
  const ModelConfig& mc = src.cfg;
  if (data.empty()) {
    data = src.meta.at("data_dir").get<std::string>();
    struct stat st {};
    MC_REQUIRE(!data.empty() && ::stat(data.c_str(), &st) == 0 && S_ISDIR(st.st_mode),
               "--data not given and the checkpoint's data directory '%s' does not exist; pass --data", data.c_str());
  }
  if (app.count("--seq"))
    MC_REQUIRE(seq >= 1 && seq <= mc.max_seq_len, "--seq %d: must be in [1, %d] (the model's maxT)", seq,
               mc.max_seq_len);
  const int T = app.count("--seq") ? seq : src.is_ckpt ? src.meta.at("seq").get<int>() : std::min(mc.max_seq_len, 1024);
  DataDir dd = open_data_dir(data);
  MC_REQUIRE(dd.vocab_size == mc.vocab_size, "--data %s: vocabulary %d does not match %s's %d", data.c_str(),
             dd.vocab_size, model_flag(src).c_str(), mc.vocab_size);
  MC_REQUIRE(!dd.val_files.empty(), "--data %s: no *val*.bin shards to evaluate on", data.c_str());
  Dataset val(dd.val_files, dd.vocab_size, T);
  size_t K = val.num_sequences();
  if (max_seqs > 0) K = std::min<size_t>(K, size_t(max_seqs));
  // Activations for the sequences there are, not for --batch: `--batch 200000` on a small validation
  // set would otherwise ask for tens of GiB it can never use.
  batch = int(std::min<size_t>(size_t(batch), K));
  auto ops = make_ops(resolve_device(device), 0);
  GPT2 model(mc, *ops, batch, T);
  model.set_params(src.params);
  std::vector<int> in(size_t(batch) * T), tg(size_t(batch) * T);
  double sum = 0;
  for (size_t i = 0; i < K; i += size_t(batch)) {
    const int b = int(std::min<size_t>(size_t(batch), K - i));
    for (int k = 0; k < b; ++k) val.get(i + size_t(k), in.data() + size_t(k) * T, tg.data() + size_t(k) * T);
    sum += model.forward(in.data(), tg.data(), b, T) * b;
  }
  std::printf("val_loss %.6f (%zu sequences of %d tokens, %s)\n", sum / double(K), K, T, describe(src).c_str());
  return 0;
}

// ---- sample ----------------------------------------------------------------------------------

int cmd_sample(int argc, char** argv) {
  std::string ckpt, model_file, data, prompt, device = "cpu";
  int tokens = 200, top_k = 0;
  float temperature = 1.0f;
  uint64_t seed = 1337;
  bool no_kv_cache = false;
  CLI::App app("Generate text from a checkpoint or an llm.c model file.", "sample");
  app.add_option("--ckpt", ckpt, "checkpoint file");
  app.add_option("--model-file", model_file, "llm.c model file (fp32 version 3 or bf16 version 5)");
  app.add_option("--data", data,
                 "data directory whose tokenizer decodes the output (default: the checkpoint's; for a model file "
                 "the vocabulary decides: 50257 gpt2, 256 byte, otherwise token ids)");
  app.add_option("--prompt", prompt, "text to continue (byte and gpt2 models)");
  app.add_option("--tokens", tokens, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", temperature, "softmax temperature (0: greedy)")->capture_default_str();
  app.add_option("--top-k", top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  app.add_option("--seed", seed, "sampling seed")->capture_default_str();
  app.add_flag("--no-kv-cache", no_kv_cache, "recompute the whole context for every token (same tokens, slower)");
  app.add_option("--device", device, "cpu | cuda")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(tokens > 0, "--tokens %d: must be positive", tokens);
  MC_REQUIRE(temperature >= 0 && std::isfinite(temperature), "--temperature %g: must be a finite number >= 0",
             double(temperature));
  MC_REQUIRE(top_k >= 0, "--top-k %d: must be >= 0", top_k);
  const ModelSource src = load_model_source(app, ckpt, model_file);
  const ModelConfig& mc = src.cfg;
  std::string tok, data_dir;
  if (!data.empty()) {
    const DataDir dd = open_data_dir(data);
    MC_REQUIRE(dd.vocab_size == mc.vocab_size, "--data %s: vocabulary %d does not match %s's %d", data.c_str(),
               dd.vocab_size, model_flag(src).c_str(), mc.vocab_size);
    tok = dd.tokenizer;
    data_dir = data;
  } else if (src.is_ckpt) {
    tok = src.meta.at("tokenizer").get<std::string>();
    data_dir = src.meta.at("data_dir").get<std::string>();
  } else {
    tok = mc.vocab_size == kGpt2Vocab ? "gpt2" : mc.vocab_size == kByteVocab ? "byte" : "ids";
  }
  MC_REQUIRE(tok != "ids" || prompt.empty(),
             "--prompt: %s has vocabulary %d, which names no tokenizer; pass --data DIR or leave --prompt out",
             model_flag(src).c_str(), mc.vocab_size);
  std::vector<int> seq = encode_prompt(tok, prompt);
  // The start token: newline for bytes, <|endoftext|> where the vocabulary has it, else token 0.
  if (seq.empty()) seq.push_back(tok == "byte" ? int('\n') : mc.vocab_size > 50256 ? 50256 : 0);
  for (int t : seq) MC_REQUIRE(t < mc.vocab_size, "--prompt: token %d is outside the model's vocabulary", t);
  auto ops = make_ops(resolve_device(device), 0);
  // Activations for the longest context this run can use, not the model's maximum (which may be large).
  const int ctx = int(std::min<int64_t>(mc.max_seq_len, int64_t(seq.size()) + tokens));
  GPT2 model(mc, *ops, 1, ctx);
  model.set_params(src.params);
  std::printf("%s", prompt.c_str());
  SampleOptions opt;
  opt.tokens = tokens;
  opt.temperature = temperature;
  opt.top_k = top_k;
  opt.seed = seed;
  opt.kv_cache = !no_kv_cache;
  generate(model, seq, opt, [&](int next) {
    std::printf("%s", decode_tokens(tok, data_dir, {next}).c_str());
    // A reader that went away (`sample | head -c 100`) or a full disk: stop generating now rather
    // than compute the remaining tokens for nobody (Note [Standard output is checked] in main.cpp).
    errno = 0;
    const bool flushed = std::fflush(stdout) == 0;
    const int e = errno;
    if (!flushed || std::ferror(stdout))
      throw RuntimeError(strfmt("stdout: write failed%s%s", e ? ": " : "", e ? std::strerror(e) : ""));
  });
  std::printf("\n");
  return 0;
}

// ---- export / prepare ------------------------------------------------------------------------

int cmd_export(int argc, char** argv) {
  std::string ckpt, model_file, out, format = "llmc";
  CLI::App app("Write a checkpoint's (or an llm.c model file's) weights as an llm.c model file or a Hugging Face "
               "GPT-2 model.",
               "export");
  app.add_option("--ckpt", ckpt, "checkpoint file");
  app.add_option("--model-file", model_file, "llm.c model file (fp32 version 3 or bf16 version 5)");
  app.add_option("--format", format,
                 "llmc (llm.c model file, fp32 version 3) | llmc-bf16 (version 5, as llm.c's GPU trainer writes) | "
                 "hf (Hugging Face GPT-2: DIR/model.safetensors + DIR/config.json)")
      ->capture_default_str();
  app.add_option("--out", out, "file to write (llmc, llmc-bf16); directory to write into (hf)")->required();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(format == "llmc" || format == "llmc-bf16" || format == "hf",
             "--format %s: unknown format (expected llmc, llmc-bf16 or hf)", format.c_str());
  check_export_out(out, format);  // Note [export's --out]
  // Loading refuses invalid metadata or headers, so no invalid model is written.
  const ModelSource src = load_model_source(app, ckpt, model_file);
  if (format == "hf") {
    std::map<std::string, std::string> meta = {{"minicolossus.source", src.path}};
    if (src.is_ckpt) {
      meta["minicolossus.step"] = std::to_string(src.meta.at("step").get<int>());
      meta["minicolossus.tokenizer"] = src.meta.at("tokenizer").get<std::string>();
    }
    // The tokenizer files too, where the tokenizer is known: the checkpoint's, or the vocabulary's.
    const int V = src.cfg.vocab_size;
    const std::string tok = src.is_ckpt ? src.meta.at("tokenizer").get<std::string>()
                            : V == kGpt2Vocab ? "gpt2" : V == kByteVocab ? "byte" : "";
    for (const std::string& name : write_hf_gpt2(out, src.cfg, src.params, meta, tok))
      std::printf("wrote %s/%s\n", out.c_str(), name.c_str());
  } else {
    write_llmc_model(out, src.cfg, src.params, format == "llmc" ? kLlmcFp32 : kLlmcBf16);
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

int cmd_prepare(int argc, char** argv) {
  std::string input, out, tokenizer = "byte";
  double val_fraction = 0.1;
  CLI::App app("Tokenize a text file into train/val shards (llm.c format).", "prepare");
  app.add_option("--input", input, "UTF-8 text file")->required();
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--tokenizer", tokenizer,
                 "byte (vocab 256) | gpt2 (GPT-2's BPE, vocab 50257; ranks from scripts/setup.sh or $MC_GPT2_TIKTOKEN)")
      ->capture_default_str();
  app.add_option("--val-fraction", val_fraction, "share of the tokens kept for validation")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(val_fraction > 0 && val_fraction < 1, "--val-fraction %g: must be in (0, 1)", val_fraction);
  prepare_text(input, out, tokenizer, val_fraction);
  return 0;
}

}  // namespace mc
