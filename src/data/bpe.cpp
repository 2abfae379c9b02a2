// GPT-2's BPE tokenizer: the ranks file, the pre-tokenising pattern (PCRE2) and the merges by rank.
//
// Note [Agreement with tiktoken]
// tiktoken (r50k_base / "gpt2") encodes text in two steps, and so does this file:
//  1. Pre-tokenisation: the text is cut into pieces by the leftmost-first matches of GPT-2's pattern
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     tiktoken runs it with Rust's fancy-regex, where \s is Unicode's White_Space property: tab to CR,
//     U+0085 and the separators (Z). PCRE2's \s with PCRE2_UCP also takes U+180E (MONGOLIAN VOWEL
//     SEPARATOR, white space until Unicode 6.3 and still in PCRE2's list), so kPattern spells \s out
//     as [\t-\r\x{85}\p{Z}]; scripts/check_tokenizer.py checks every code point against tiktoken.
//     \p{L} and \p{N} follow each library's Unicode tables (PCRE2 10.42: Unicode 14), so a letter or
//     digit assigned in a later version may be cut differently; it changes the ids only where the
//     bytes on either side of the cut have a merge.
//  2. Each piece that is a token as a whole is that token; otherwise it is split into bytes, and the
//     adjacent pair whose concatenation has the lowest rank is merged, the leftmost such pair on a tie,
//     until no adjacent pair is a token (tiktoken's byte_pair_merge). Ranks are token ids.
// "<|endoftext|>" (50256) is never produced from text: the text "<|endoftext|>" is encoded as the
// plain characters it is, as tiktoken's encode_ordinary does.
//
// Note [Invalid UTF-8]
// tiktoken encodes Python strings, so it never sees bytes that are not UTF-8. Here the pattern is run
// with PCRE2_MATCH_INVALID_UTF: a byte sequence that is not valid UTF-8 matches nothing, so it lies
// between two matches, and each such run of bytes is encoded as one piece of its own (step 2 above:
// every byte is a token, so any bytes can be encoded). Valid text around it is cut as usual, so a
// binary file is encoded without error and decode(encode(x)) == x holds for every byte string.
//
// Note [BPE in n log n]
// tiktoken's merge loop rescans the piece after every merge, O(n^2) in the length of a piece; a long
// run of one letter or of spaces (one piece) would make `prepare` take hours. Here the candidate pairs
// sit in a min-heap keyed by (rank, byte position) with lazy deletion: the pair merged at each step is
// the same one tiktoken picks (lowest rank, then leftmost), in O(log n) per merge. Memory is ~30 bytes
// per byte of the piece, so a piece over 1 MiB (a megabyte without a break between letters, digits,
// punctuation and white space: a degenerate file, on which tiktoken would take hours) is merged in
// 1 MiB parts: the ids of such a piece may differ from what tiktoken would give, the bytes do not.
#include "data/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <openssl/evp.h>
#include <pcre2.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <queue>

#include "core/errors.h"
#include "core/files.h"
#include "data/data.h"

namespace mc {

const char* const kGpt2RanksSha256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930";

namespace {

// GPT-2's pattern, with \s written out as Unicode's White_Space (Note [Agreement with tiktoken]).
#define MC_WS R"(\t-\r\x{85}\p{Z})"
constexpr const char* kPattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" MC_WS R"(\p{L}\p{N}]+|[)" MC_WS
    R"(]+(?![^)" MC_WS R"(])|[)" MC_WS R"(]+)";
#undef MC_WS

constexpr size_t kMaxRanksFileBytes = size_t(16) << 20;  // the real one is 835,554 bytes
constexpr size_t kCachedPieceMax = 64;                   // longer pieces are rare: not cached
constexpr size_t kCacheMaxEntries = size_t(1) << 19;     // then the cache starts over (bounded memory)
constexpr size_t kMaxMergedPiece = size_t(1) << 20;    // longer pieces are merged in parts of this size
constexpr uint32_t kNoRank = UINT32_MAX;

std::string sha256_hex(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw RuntimeError("sha256 failed (OpenSSL)");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

// Standard base64 with padding, as tiktoken's files are written. False when s is not.
bool base64_decode(std::string_view s, std::string& out) {
  if (s.empty() || s.size() % 4 != 0 || s.size() > 4096) return false;
  // EVP_DecodeBlock reads '=' anywhere as zero bits ("====" would be a byte): padding only at the end.
  const size_t pad = s.size() - (s.find_last_not_of('=') + 1);
  if (pad > 2) return false;
  for (size_t i = 0; i < s.size() - pad; ++i)
    if (!std::isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/') return false;
  out.resize(s.size() / 4 * 3);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(s.data()), int(s.size()));
  if (n < 0) return false;
  // EVP_DecodeBlock counts the padding as zero bytes.
  out.resize(size_t(n) - pad);
  return !out.empty();
}

}  // namespace

bool parse_tiktoken_line(std::string_view line, std::string* bytes, uint64_t* rank) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || !base64_decode(line.substr(0, sp), *bytes)) return false;
  const std::string_view r = line.substr(sp + 1);
  if (r.empty() || r.size() > 12 || r.find_first_not_of("0123456789") != std::string_view::npos) return false;
  *rank = std::strtoull(std::string(r).c_str(), nullptr, 10);
  return true;
}

struct Gpt2Bpe::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_data* match = nullptr;
  std::mutex mu;  // guards everything below and `match`
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;  // piece -> (offset, count) in arena
  std::vector<uint16_t> arena;
  // Scratch of the merge loop (Note [BPE in n log n]).
  std::vector<uint32_t> next, prev, rank;
  ~Impl() {
    if (match) pcre2_match_data_free(match);
    if (code) pcre2_code_free(code);
  }
};

Gpt2Bpe::~Gpt2Bpe() = default;

std::unique_ptr<Gpt2Bpe> Gpt2Bpe::load(const std::string& path, const std::string& what) {
  const std::string text = read_input_file(path, what, kMaxRanksFileBytes);
  const std::string name = what.empty() ? path : what + " " + path;
  const std::string sum = sha256_hex(text);
  if (sum != kGpt2RanksSha256)
    throw UsageError(strfmt("%s: not GPT-2's BPE ranks: sha256 %s, expected %s (scripts/setup.sh fetches the "
                            "right file)",
                            name.c_str(), sum.c_str(), kGpt2RanksSha256));
  std::unique_ptr<Gpt2Bpe> bpe(new Gpt2Bpe());
  bpe->path_ = path;
  // The checksum already vouches for the content; the checks below keep a future pin honest.
  bpe->tokens_.reserve(kGpt2MergeableRanks);
  std::string bytes;
  uint64_t rank = 0;
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    ++line;
    MC_REQUIRE(parse_tiktoken_line(std::string_view(text).substr(pos, eol - pos), &bytes, &rank),
               "%s: line %zu: expected \"<base64 bytes> <rank>\"", name.c_str(), line);
    MC_REQUIRE(rank == bpe->tokens_.size(), "%s: line %zu: rank %llu, expected %zu", name.c_str(), line,
               (unsigned long long)rank, bpe->tokens_.size());
    bpe->tokens_.push_back(bytes);
    pos = eol + 1;
  }
  MC_REQUIRE(bpe->tokens_.size() == size_t(kGpt2MergeableRanks), "%s: %zu ranks, expected %d", name.c_str(),
             bpe->tokens_.size(), kGpt2MergeableRanks);
  for (size_t i = 0; i < bpe->tokens_.size(); ++i)
    MC_REQUIRE(bpe->ranks_.emplace(bpe->tokens_[i], uint32_t(i)).second, "%s: token %zu appears twice", name.c_str(),
               i);
  for (int b = 0; b < 256; ++b)  // every byte is a token, so any bytes can be encoded
    MC_REQUIRE(bpe->ranks_.count(std::string_view(std::string(1, char(b)))) == 1, "%s: byte %d has no token",
               name.c_str(), b);

  bpe->impl_ = std::make_unique<Impl>();
  int err = 0;
  PCRE2_SIZE err_off = 0;
  bpe->impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!bpe->impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw RuntimeError(strfmt("PCRE2 cannot compile GPT-2's pattern: %s", reinterpret_cast<char*>(msg)));
  }
  pcre2_jit_compile(bpe->impl_->code, PCRE2_JIT_COMPLETE);  // without JIT (some platforms): interpreted
  bpe->impl_->match = pcre2_match_data_create_from_pattern(bpe->impl_->code, nullptr);
  if (!bpe->impl_->match) throw RuntimeError("PCRE2: out of memory");
  return bpe;
}

// Caller holds impl_->mu (it uses the scratch vectors).
void Gpt2Bpe::merge_piece(std::string_view piece, std::vector<uint16_t>& out) const {
  if (piece.empty()) return;
  if (auto it = ranks_.find(piece); it != ranks_.end()) {  // tiktoken's shortcut: a whole token
    out.push_back(uint16_t(it->second));
    return;
  }
  // The parts are a linked list named by their first byte: part i spans [i, next[i]), with a sentinel
  // at n. rank[i] is the rank of part i joined with the part after it.
  const uint32_t n = uint32_t(piece.size());
  Impl& m = *impl_;
  m.next.resize(n + 1);
  m.prev.resize(n + 1);
  m.rank.resize(n + 1);
  auto rank_of = [&](uint32_t a, uint32_t b) {  // rank of piece[a, b), kNoRank if not a token
    auto it = ranks_.find(piece.substr(a, b - a));
    return it == ranks_.end() ? kNoRank : it->second;
  };
  using Entry = std::pair<uint32_t, uint32_t>;  // (rank, part): the smallest rank, then the leftmost
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (uint32_t i = 0; i <= n; ++i) {
    m.next[i] = i + 1;
    m.prev[i] = i - 1;  // wraps for i == 0: never read
  }
  auto pair_rank = [&](uint32_t i) {  // part i with its successor; none for the last part
    const uint32_t j = m.next[i];
    return j >= n ? kNoRank : rank_of(i, m.next[j]);
  };
  for (uint32_t i = 0; i < n; ++i) {
    m.rank[i] = i + 1 < n ? rank_of(i, i + 2) : kNoRank;
    if (m.rank[i] != kNoRank) heap.push({m.rank[i], i});
  }
  m.rank[n] = kNoRank;
  while (!heap.empty()) {
    const auto [r, i] = heap.top();
    heap.pop();
    if (m.rank[i] != r) continue;  // stale: part i changed, or was merged away (rank set to none)
    const uint32_t j = m.next[i];  // merge j into i
    m.next[i] = m.next[j];
    m.prev[m.next[j]] = i;
    m.rank[j] = kNoRank;
    m.rank[i] = pair_rank(i);
    if (m.rank[i] != kNoRank) heap.push({m.rank[i], i});
    if (i > 0) {
      const uint32_t p = m.prev[i];
      m.rank[p] = pair_rank(p);
      if (m.rank[p] != kNoRank) heap.push({m.rank[p], p});
    }
  }
  for (uint32_t i = 0; i < n; i = m.next[i]) {
    const uint32_t id = rank_of(i, m.next[i]);
    MC_CHECK(id != kNoRank, "BPE left a part that is not a token");
    out.push_back(uint16_t(id));
  }
}

void Gpt2Bpe::encode_piece(std::string_view piece, std::vector<uint16_t>& out) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  merge_piece(piece, out);
}

// Caller holds impl_->mu.
void Gpt2Bpe::cached_piece(std::string_view piece, std::vector<uint16_t>& out) const {
  if (piece.size() > kCachedPieceMax) return merge_piece(piece, out);
  if (auto it = ranks_.find(piece); it != ranks_.end()) {
    out.push_back(uint16_t(it->second));
    return;
  }
  Impl& m = *impl_;
  std::string key(piece);
  if (auto it = m.cache.find(key); it != m.cache.end()) {
    out.insert(out.end(), m.arena.begin() + it->second.first,
               m.arena.begin() + it->second.first + it->second.second);
    return;
  }
  const size_t before = out.size();
  merge_piece(piece, out);
  if (m.cache.size() >= kCacheMaxEntries) {
    m.cache.clear();
    m.arena.clear();
  }
  m.cache.emplace(std::move(key), std::make_pair(uint32_t(m.arena.size()), uint32_t(out.size() - before)));
  m.arena.insert(m.arena.end(), out.begin() + ptrdiff_t(before), out.end());
}

void Gpt2Bpe::encode(std::string_view text, std::vector<uint16_t>& out,
                     const std::function<void(size_t)>& progress) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(impl_->match);
  size_t off = 0, pieces = 0;
  auto emit = [&](size_t a, size_t b) {
    if (b - a <= kMaxMergedPiece) return cached_piece(text.substr(a, b - a), out);
    for (; a < b; a += kMaxMergedPiece) {  // Note [BPE in n log n]
      merge_piece(text.substr(a, std::min(kMaxMergedPiece, b - a)), out);
      if (progress) progress(a);
    }
  };
  while (off < n) {
    const int rc = pcre2_match(impl_->code, subject, n, off, 0, impl_->match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {  // only bytes that are not UTF-8 are left (Note [Invalid UTF-8])
      emit(off, n);
      break;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw RuntimeError(strfmt("GPT-2 pre-tokenisation failed at byte %zu: %s", off, reinterpret_cast<char*>(msg)));
    }
    const size_t a = ov[0], b = ov[1];
    MC_CHECK(a >= off && b > a && b <= n, "PCRE2 match [%zu, %zu) from %zu", a, b, off);
    if (a > off) emit(off, a);  // bytes that are not UTF-8
    emit(a, b);
    off = b;
    if (progress && (++pieces & 0xffff) == 0) progress(off);
  }
  if (progress) progress(n);
}

std::vector<int> Gpt2Bpe::encode(std::string_view text) const {
  std::vector<uint16_t> t;
  encode(text, t);
  return std::vector<int>(t.begin(), t.end());
}

std::string Gpt2Bpe::decode(const std::vector<int>& tokens) const {
  std::string out;
  for (int t : tokens) {
    if (t >= 0 && t < int(tokens_.size()))
      out += tokens_[size_t(t)];
    else if (t == kGpt2EndOfText)
      out += "<|endoftext|>";
    else
      out += "<" + std::to_string(t) + ">";
  }
  return out;
}

std::string find_gpt2_ranks() {
  if (const char* e = std::getenv("MC_GPT2_TIKTOKEN"); e && *e) return e;
  std::vector<std::string> cands;
  if (std::string b = bundled_share_file("gpt2.tiktoken"); !b.empty()) cands.push_back(b);
  try {
    cands.push_back(cache_root() + "/gpt2.tiktoken");
    if (const char* d = std::getenv("MC_CACHE_DIR"); d && *d) cands.push_back(user_cache_root() + "/gpt2.tiktoken");
  } catch (const RuntimeError&) {  // no cache directory can be named: only the bundle's copy
  }
  for (const std::string& c : cands) {
    struct stat st {};
    if (::stat(c.c_str(), &st) == 0) return c;  // whatever it is, load() reports it if it is not right
  }
  return "";
}

const Gpt2Bpe& gpt2_bpe(const std::string& who) {
  const char* env = std::getenv("MC_GPT2_TIKTOKEN");
  const bool from_env = env && *env;
  const std::string path = find_gpt2_ranks();
  if (path.empty()) {
    std::string where;
    try {
      where = " in " + cache_root();
    } catch (const RuntimeError&) {
    }
    throw UsageError(strfmt("%s: GPT-2's BPE ranks (gpt2.tiktoken) not found%s: run scripts/setup.sh "
                            "(or set MC_GPT2_TIKTOKEN to the file)",
                            who.c_str(), where.c_str()));
  }
  // Once per process and file version: sample decodes one token per call.
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Gpt2Bpe>> loaded;
  struct stat st {};
  const std::string key = ::stat(path.c_str(), &st) == 0
                              ? strfmt("%s|%llu|%llu|%lld|%lld", path.c_str(), (unsigned long long)st.st_dev,
                                       (unsigned long long)st.st_ino, (long long)st.st_mtime, (long long)st.st_size)
                              : path;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = loaded[key];
  if (!slot) {
    try {
      slot = Gpt2Bpe::load(path, from_env ? "MC_GPT2_TIKTOKEN" : "");
    } catch (...) {
      loaded.erase(key);
      throw;
    }
  }
  return *slot;
}

}  // namespace mc
