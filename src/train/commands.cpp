// The user-facing subcommands eval, sample, export, prepare (train: cmd_train.cpp). Each parses its own flags with
// CLI11 and returns the process exit code (0 ok, 2 bad usage or input, 1 runtime failure).
// Invariant: errors are reported as one line on stderr; under several ranks, an error every rank
// sees is printed by rank 0 only, and an error of one rank aborts the job instead of hanging it.
#include "train/commands.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/errors.h"
#include "core/files.h"
#include "data/data.h"
#include "dist/comm.h"
#include "model/generate.h"
#include "model/gpt2.h"
#include "model/llmc_io.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace mc {

int this_rank() { return error_rank() >= 0 ? error_rank() : 0; }

void report_error(const std::exception& e) {
  std::fprintf(stderr, "minicolossus: %s\n", e.what());
  std::fflush(stderr);
}

int parse_flags(CLI::App& app, int argc, char** argv, std::exception_ptr* err) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    if (this_rank() == 0) std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    *err = std::make_exception_ptr(UsageError(strfmt("%s: %s (see --help)", app.get_name().c_str(), e.what())));
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

// ---- eval ------------------------------------------------------------------------------------

int cmd_eval(int argc, char** argv) {
  std::string ckpt, data, device = "cpu";
  int batch = 8, max_seqs = 0;
  CLI::App app("Print the validation loss of a checkpoint.", "eval");
  app.add_option("--ckpt", ckpt, "checkpoint file")->required();
  app.add_option("--data", data, "data directory (default: the one the checkpoint was trained on)");
  app.add_option("--batch", batch, "sequences per forward pass")->capture_default_str();
  app.add_option("--max-seqs", max_seqs, "evaluate at most this many validation sequences (0: all)");
  app.add_option("--device", device, "cpu | cuda")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(batch > 0, "--batch %d: must be positive", batch);
  MC_REQUIRE(max_seqs >= 0, "--max-seqs %d: must be >= 0", max_seqs);
  LoadedCheckpoint ck = load_checkpoint(ckpt);  // metadata validated (Note [Checkpoint metadata is input])
  const ModelConfig mc = checkpoint_model(ck);
  if (data.empty()) {
    data = ck.meta.at("data_dir").get<std::string>();
    struct stat st {};
    MC_REQUIRE(!data.empty() && ::stat(data.c_str(), &st) == 0 && S_ISDIR(st.st_mode),
               "--data not given and the checkpoint's data directory '%s' does not exist; pass --data", data.c_str());
  }
  DataDir dd = open_data_dir(data);
  MC_REQUIRE(dd.vocab_size == mc.vocab_size, "--data %s: vocabulary %d does not match the checkpoint's %d",
             data.c_str(), dd.vocab_size, mc.vocab_size);
  MC_REQUIRE(!dd.val_files.empty(), "--data %s: no *val*.bin shards to evaluate on", data.c_str());
  const int T = ck.meta.at("seq").get<int>();
  Dataset val(dd.val_files, dd.vocab_size, T);
  auto ops = make_ops(resolve_device(device), 0);
  GPT2 model(mc, *ops, batch, T);
  model.set_params(ck.get("params"));
  size_t K = val.num_sequences();
  if (max_seqs > 0) K = std::min<size_t>(K, size_t(max_seqs));
  std::vector<int> in(size_t(batch) * T), tg(size_t(batch) * T);
  double sum = 0;
  for (size_t i = 0; i < K; i += size_t(batch)) {
    const int b = int(std::min<size_t>(size_t(batch), K - i));
    for (int k = 0; k < b; ++k) val.get(i + size_t(k), in.data() + size_t(k) * T, tg.data() + size_t(k) * T);
    sum += model.forward(in.data(), tg.data(), b, T) * b;
  }
  std::printf("val_loss %.6f (%zu sequences of %d tokens, %s, step %d)\n", sum / double(K), K, T, ckpt.c_str(),
              ck.meta.at("step").get<int>());
  return 0;
}

// ---- sample ----------------------------------------------------------------------------------

int cmd_sample(int argc, char** argv) {
  std::string ckpt, prompt, device = "cpu";
  int tokens = 200, top_k = 0;
  float temperature = 1.0f;
  uint64_t seed = 1337;
  CLI::App app("Generate text from a checkpoint.", "sample");
  app.add_option("--ckpt", ckpt, "checkpoint file")->required();
  app.add_option("--prompt", prompt, "text to continue (byte-level models)");
  app.add_option("--tokens", tokens, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", temperature, "softmax temperature (0: greedy)")->capture_default_str();
  app.add_option("--top-k", top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  app.add_option("--seed", seed, "sampling seed")->capture_default_str();
  app.add_option("--device", device, "cpu | cuda")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(tokens > 0, "--tokens %d: must be positive", tokens);
  MC_REQUIRE(temperature >= 0 && std::isfinite(temperature), "--temperature %g: must be >= 0", double(temperature));
  MC_REQUIRE(top_k >= 0, "--top-k %d: must be >= 0", top_k);
  LoadedCheckpoint ck = load_checkpoint(ckpt);  // metadata validated (Note [Checkpoint metadata is input])
  const ModelConfig mc = checkpoint_model(ck);
  const std::string tok = ck.meta.at("tokenizer").get<std::string>();
  const std::string data_dir = ck.meta.at("data_dir").get<std::string>();
  std::vector<int> seq = encode_prompt(tok, prompt);
  if (seq.empty()) seq.push_back(tok == "byte" ? int('\n') : 50256);  // newline / <|endoftext|>
  for (int t : seq) MC_REQUIRE(t < mc.vocab_size, "--prompt: token %d is outside the model's vocabulary", t);
  auto ops = make_ops(resolve_device(device), 0);
  // Activations for the longest context this run can use, not the model's maximum (which may be large).
  const int ctx = int(std::min<int64_t>(mc.max_seq_len, int64_t(seq.size()) + tokens));
  GPT2 model(mc, *ops, 1, ctx);
  model.set_params(ck.get("params"));
  std::printf("%s", prompt.c_str());
  SampleOptions opt;
  opt.tokens = tokens;
  opt.temperature = temperature;
  opt.top_k = top_k;
  opt.seed = seed;
  generate(model, seq, opt, [&](int next) {
    std::printf("%s", decode_tokens(tok, data_dir, {next}).c_str());
    std::fflush(stdout);
  });
  std::printf("\n");
  return 0;
}

// ---- export / prepare ------------------------------------------------------------------------

int cmd_export(int argc, char** argv) {
  std::string ckpt, out;
  CLI::App app("Write a checkpoint's weights as an llm.c model file (fp32, version 3).", "export");
  app.add_option("--ckpt", ckpt, "checkpoint file")->required();
  app.add_option("--out", out, "llm.c model file to write")->required();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  check_output_path(out, "--out");
  LoadedCheckpoint ck = load_checkpoint(ckpt);  // refuses invalid metadata, so no invalid model is written
  write_llmc_model(out, checkpoint_model(ck), ck.get("params"));
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

int cmd_prepare(int argc, char** argv) {
  std::string input, out, tokenizer = "byte";
  double val_fraction = 0.1;
  CLI::App app("Tokenize a text file into train/val shards (llm.c format).", "prepare");
  app.add_option("--input", input, "UTF-8 text file")->required();
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--tokenizer", tokenizer, "byte (gpt2 needs llm.c's own tokenizer tools)")->capture_default_str();
  app.add_option("--val-fraction", val_fraction, "share of the tokens kept for validation")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  MC_REQUIRE(val_fraction > 0 && val_fraction < 1, "--val-fraction %g: must be in (0, 1)", val_fraction);
  prepare_text(input, out, tokenizer, val_fraction);
  return 0;
}

}  // namespace mc
