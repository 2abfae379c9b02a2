// `prepare` (text file -> train/val shards + tokenizer.json) and the built-in default corpus.
// Invariant: every file appears by rename, tokenizer.json last, and the default corpus directory
// appears whole by one directory rename, so a reader that sees it complete can trust it.
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/errors.h"
#include "core/files.h"
#include "data/bpe.h"
#include "data/data.h"

namespace mc {

std::string cache_root() {
  if (const char* d = std::getenv("MC_CACHE_DIR"); d && *d) return d;
  return user_cache_root();
}

std::string user_cache_root() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/minicolossus";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/minicolossus";
  // No HOME (env -i, some batch systems): the home directory the user database gives.
  if (const struct passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir && *pw->pw_dir)
    return std::string(pw->pw_dir) + "/.cache/minicolossus";
  throw RuntimeError("cannot place the cache: none of MC_CACHE_DIR, XDG_CACHE_HOME, HOME is set");
}

// A relocatable bundle (scripts/package.sh) carries the default corpus's text (kjv.txt) and GPT-2's
// ranks (gpt2.tiktoken) for machines without bible-kjv or scripts/setup.sh's cache.
std::string bundled_share_file(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const fs::path p = exe.parent_path().parent_path() / "share" / "minicolossus" / name;
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? p.string() : "";
}

namespace {

namespace fs = std::filesystem;

// Validation needs one full sequence at the longest context we ship (1024) plus its target.
constexpr size_t kMinValTokens = 1025;

// The vocabulary of a tokenizer prepare can write; UsageError naming --tokenizer for any other.
int prepared_vocab(const std::string& tokenizer) {
  if (tokenizer == "byte") return kByteVocab;
  if (tokenizer == "gpt2") return kGpt2Vocab;
  throw UsageError(strfmt("--tokenizer %s: unknown tokenizer (byte | gpt2)", tokenizer.c_str()));
}

// The whole text of a user's input file (a FIFO, directory or device is refused without blocking).
std::string read_file(const std::string& path) { return read_input_file(path, "--input"); }

// Where `bible` lives on PATH, or "" when it is not installed.
std::string find_on_path(const std::string& exe) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) dir = ".";
    const std::string cand = dir + "/" + exe;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
  }
  return "";
}

// True when dir holds a complete, valid corpus prepared with `tokenizer`.
bool corpus_ok(const std::string& dir, const std::string& tokenizer) {
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "tokenizer.json", ec)) return false;
  // A gpt2 corpus prepared before prepare wrote llm.c's tokenizer file is made again (0.3 s).
  if (tokenizer == "gpt2" && !fs::exists(fs::path(dir) / "gpt2_tokenizer.bin", ec)) return false;
  try {
    const DataDir dd = open_data_dir(dir);
    if (dd.val_files.empty() || dd.tokenizer != tokenizer) return false;
    for (const auto* files : {&dd.train_files, &dd.val_files})
      for (const std::string& f : *files) TokenShard check(f, dd.vocab_size);
    return true;
  } catch (const UsageError&) {
    return false;
  }
}

// The whole King James Bible as plain text, from Debian's bible-kjv (`bible` prints it in ~0.05 s), or
// the copy a bundle carries (the same bytes: package.sh writes it with `bible`).
std::string kjv_text() {
  const std::string exe = find_on_path("bible");
  if (exe.empty()) {
    const std::string bundled = bundled_share_file("kjv.txt");
    if (!bundled.empty()) return read_file(bundled);
    throw RuntimeError("the default corpus needs Debian's bible-kjv package: run scripts/setup.sh "
                       "(or pass --data DIR)");
  }
  const std::string cmd = "'" + exe + "' 'Gen1:1-Rev22:21' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw RuntimeError(strfmt("cannot run %s: %s", exe.c_str(), std::strerror(errno)));
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0 || text.size() < 1000000)
    throw RuntimeError(strfmt("%s 'Gen1:1-Rev22:21' failed (exit status %d, %zu bytes of text); reinstall bible-kjv "
                              "with scripts/setup.sh",
                              exe.c_str(), WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.size()));
  return text;
}

// Note [One document]
// A gpt2 shard is <|endoftext|> (50256) followed by tiktoken's encode_ordinary of the whole text: the
// text file is taken as one document (plain text does not say where documents end, so no other 50256
// is added). The leading 50256 is there because `sample` without --prompt starts from 50256, as
// GPT-2 does, and llm.c's GPT-2 data scripts put it before every document: a model trained on these
// shards has then seen what follows it.

// The text's tokens with `tokenizer` (byte | gpt2, checked by the caller). Progress on stderr when it
// takes over a second.
std::vector<uint16_t> tokenize(const std::string& text, const std::string& tokenizer, const std::string& what,
                               double& seconds) {
  seconds = 0;
  if (tokenizer == "byte") return byte_encode(text);
  const Gpt2Bpe& bpe = gpt2_bpe();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point last = t0;
  bool shown = false;
  const double mb = double(text.size()) / 1e6;
  auto progress = [&](size_t done) {
    const Clock::time_point now = Clock::now();
    if (now - last < std::chrono::seconds(1) && done < text.size()) return;
    if (!shown && done == text.size()) return;  // finished within the first second: nothing to show
    last = now;
    shown = true;
    const double s = std::chrono::duration<double>(now - t0).count();
    std::fprintf(stderr, "prepare: %s: %.1f of %.1f MB tokenized (%.0f%%), %.1f MB/s\n", what.c_str(),
                 double(done) / 1e6, mb, 100.0 * double(done) / double(text.size()), double(done) / 1e6 / s);
  };
  std::vector<uint16_t> tokens;
  tokens.reserve(text.size() / 3 + 16);
  tokens.push_back(uint16_t(kGpt2EndOfText));  // Note [One document]
  bpe.encode(text, tokens, progress);
  seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return tokens;
}

struct Prepared {
  size_t n_train = 0, n_val = 0;  // tokens
  size_t bytes = 0;               // of text
  double seconds = 0;             // tokenizing (gpt2 only)
};

// Note [prepare's output directory]
// --out may be new, or hold anything but shards other than the two prepare writes: a data directory is
// every *train*.bin and *val*.bin in it (open_data_dir), so a train_000001.bin left by another
// preparation would silently join the new data, possibly with another tokenizer's ids. Rewriting an
// earlier prepare's output in place is fine (each file is replaced by rename).
void check_out_dir(const std::string& out_dir) {
  MC_REQUIRE(!out_dir.empty(), "--out: empty path");
  std::error_code ec;
  if (!fs::exists(out_dir, ec)) return;
  if (!fs::is_directory(out_dir, ec))
    throw UsageError(strfmt("--out %s: exists and is not a directory", out_dir.c_str()));
  for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "train_000000.bin" || name == "val_000000.bin") continue;
    const bool bin = name.size() >= 4 && name.compare(name.size() - 4, 4, ".bin") == 0;
    if (bin && (name.find("train") != std::string::npos || name.find("val") != std::string::npos))
      throw UsageError(strfmt("--out %s: already holds the shard %s, which would mix with the new data; use an "
                              "empty directory",
                              out_dir.c_str(), name.c_str()));
  }
}

// prepare_text without the report line.
Prepared prepare_quietly(const std::string& input, const std::string& out_dir,
                                          const std::string& tokenizer, double val_fraction) {
  const int vocab = prepared_vocab(tokenizer);
  MC_REQUIRE(val_fraction > 0 && val_fraction < 1, "--val-fraction %g: must be in (0, 1)", val_fraction);
  check_out_dir(out_dir);
  // The byte tokenizer makes one token per byte: a text too large for one shard is refused from its
  // size, before gigabytes are read.
  struct stat st {};
  if (tokenizer == "byte" && ::stat(input.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 2)
    prepare_split(size_t(st.st_size), val_fraction, input);
  const std::string text = read_file(input);
  if (text.empty()) throw UsageError(strfmt("--input %s: file is empty", input.c_str()));
  if (tokenizer == "byte" && text.size() < 2)
    throw UsageError(strfmt("--input %s: too short (%zu byte); need at least 2 tokens", input.c_str(), text.size()));
  if (tokenizer == "byte") prepare_split(text.size(), val_fraction, input);  // one token per byte: refuse now
  if (tokenizer == "gpt2") gpt2_bpe();  // a missing or bad ranks file is reported before --out is made

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    throw UsageError(strfmt("--out %s: cannot create directory: %s", out_dir.c_str(), ec.message().c_str()));
  probe_writable_dir(out_dir, "--out " + out_dir);

  Prepared r;
  r.bytes = text.size();
  const std::vector<uint16_t> tokens = tokenize(text, tokenizer, input, r.seconds);
  // n >= 2: byte checked above, gpt2 has 50256 and at least one more
  const PrepareSplit split = prepare_split(tokens.size(), val_fraction, input);
  const size_t n_train = split.n_train, n_val = split.n_val;

  const fs::path out(out_dir);
  write_shard((out / "train_000000.bin").string(), std::vector<uint16_t>(tokens.begin(), tokens.begin() + n_train));
  write_shard((out / "val_000000.bin").string(), std::vector<uint16_t>(tokens.begin() + n_train, tokens.end()));
  if (tokenizer == "gpt2") {  // llm.c's tokenizer file beside its shards, so llm.c's trainer decodes them
    std::vector<std::string> table = gpt2_bpe().token_bytes();
    table.push_back("<|endoftext|>");
    write_llmc_tokenizer((out / "gpt2_tokenizer.bin").string(), table, kGpt2EndOfText);
  }
  const std::string meta = nlohmann::json{{"tokenizer", tokenizer}, {"vocab_size", vocab}}.dump() + "\n";
  write_file_atomic((out / "tokenizer.json").string(), {{meta.data(), meta.size()}});
  r.n_train = n_train;
  r.n_val = n_val;
  return r;
}

}  // namespace

PrepareSplit prepare_split(size_t n, double val_fraction, const std::string& input, size_t max_shard_tokens) {
  MC_CHECK(n >= 2, "prepare_split: %zu tokens", n);
  size_t n_val = size_t(double(n) * val_fraction);
  if (n_val < kMinValTokens) n_val = n >= 2 * kMinValTokens ? kMinValTokens : n / 2;
  n_val = std::min(std::max<size_t>(n_val, 1), n - 1);
  PrepareSplit s{n - n_val, n_val};
  const size_t biggest = std::max(s.n_train, s.n_val);
  if (biggest > max_shard_tokens)
    throw UsageError(strfmt("--input %s: %zu tokens make a %s shard of %zu tokens, over the %zu a shard can hold "
                            "(its header counts tokens in an int32); split the text into smaller files",
                            input.c_str(), n, biggest == s.n_train ? "train" : "val", biggest, max_shard_tokens));
  return s;
}

void probe_writable_dir(const std::string& dir, const std::string& who) {
  const std::string probe = strfmt("%s/.minicolossus-probe.%d", dir.c_str(), int(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int e = errno;
    if (e != EEXIST)  // EEXIST: a leftover of a killed run with our pid; the directory is writable
      throw UsageError(strfmt("%s: cannot write into %s: %s", who.c_str(), dir.c_str(), std::strerror(e)));
    return;
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

bool default_corpus_available() { return !find_on_path("bible").empty() || !bundled_share_file("kjv.txt").empty(); }

void prepare_text(const std::string& input, const std::string& out_dir, const std::string& tokenizer,
                  double val_fraction) {
  const Prepared r = prepare_quietly(input, out_dir, tokenizer, val_fraction);
  std::string how;
  if (tokenizer == "gpt2")
    how = strfmt("; %.2f MB tokenized in %.2f s, %.1f MB/s", double(r.bytes) / 1e6, r.seconds,
                 double(r.bytes) / 1e6 / std::max(r.seconds, 1e-9));
  std::printf("prepared %s: %zu train tokens, %zu val tokens (%s tokenizer, vocab %d%s)\n", out_dir.c_str(), r.n_train,
              r.n_val, tokenizer.c_str(), prepared_vocab(tokenizer), how.c_str());
  std::fflush(stdout);
}

std::string default_data_dir(const std::string& tokenizer) {
  prepared_vocab(tokenizer);  // an unknown name is refused before any work
  const std::string root = cache_root();
  const std::string name = tokenizer == "byte" ? "kjv" : "kjv-" + tokenizer;
  const std::string target = root + "/" + name;
  if (corpus_ok(target, tokenizer)) return target;

  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec || !fs::is_directory(root))
    throw RuntimeError(strfmt("%s: cannot create the cache directory: %s", root.c_str(), ec.message().c_str()));
  if (tokenizer == "gpt2") gpt2_bpe();  // missing or bad ranks: say so before the work
  const std::string text = kjv_text();
  std::fprintf(stderr, "preparing the default corpus (King James Bible) into %s...\n", target.c_str());

  // A private directory: concurrent ranks each build their own and race only on the final rename.
  std::string tmpl = strfmt("%s/%s.tmp.%d.XXXXXX", root.c_str(), name.c_str(), int(::getpid()));
  if (!::mkdtemp(&tmpl[0]))
    throw RuntimeError(strfmt("%s: cannot create a temporary directory: %s", root.c_str(), std::strerror(errno)));
  const std::string tmp = tmpl;
  try {
    const std::string src = tmp + "/kjv.txt";
    {
      std::ofstream o(src, std::ios::binary);
      o.write(text.data(), std::streamsize(text.size()));
      if (!o) throw RuntimeError(strfmt("%s: write failed", src.c_str()));
    }
    const Prepared r = prepare_quietly(src, tmp, tokenizer, 0.1);
    fs::remove(src, ec);
    ::chmod(tmp.c_str(), 0755);  // mkdtemp made it private; the corpus is plain public text
    std::fprintf(stderr, "prepared the default corpus: %zu train tokens, %zu val tokens (%s tokenizer)\n", r.n_train,
                 r.n_val, tokenizer.c_str());

    // Publish by one rename. If the target exists, either another process won the race (use its
    // copy) or it is a broken leftover (move it aside and retry).
    bool placed = false;
    for (int attempt = 0; attempt < 5 && !placed; ++attempt) {
      if (::rename(tmp.c_str(), target.c_str()) == 0) {
        placed = true;
        break;
      }
      const int e = errno;
      if (e != ENOTEMPTY && e != EEXIST)
        throw RuntimeError(strfmt("%s: cannot rename %s into place: %s", target.c_str(), tmp.c_str(), std::strerror(e)));
      if (corpus_ok(target, tokenizer)) {
        fs::remove_all(tmp, ec);
        placed = true;
      } else {
        const std::string junk = strfmt("%s.broken.%d", tmp.c_str(), attempt);
        if (::rename(target.c_str(), junk.c_str()) == 0) fs::remove_all(junk, ec);
      }
    }
    if (!placed) throw RuntimeError(strfmt("%s: cannot replace the broken corpus directory", target.c_str()));
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return target;
}

}  // namespace mc
