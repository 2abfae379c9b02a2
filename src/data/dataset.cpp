// The sequences of a set of shards (Dataset) and their deterministic shuffled order (Loader).
// Invariant: global position p always names the same sequence for a given (dataset, seed), whatever
// the world size, the call pattern or the platform: fill(p, 4) == fill(p, 2) + fill(p + 2, 2).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/errors.h"
#include "data/data.h"

namespace mc {

// ---- Dataset -----------------------------------------------------------------------------------

Dataset::Dataset(const std::vector<std::string>& files, int vocab_size, int T) : T_(T) {
  MC_REQUIRE(T > 0, "--seq %d: must be positive", T);
  MC_REQUIRE(!files.empty(), "no token shards given");
  first_.reserve(files.size() + 1);
  size_t tokens = 0;
  for (const std::string& f : files) {
    shards_.push_back(std::make_unique<TokenShard>(f, vocab_size));
    const size_t n = shards_.back()->size();
    first_.push_back(total_);
    total_ += (n - 1) / size_t(T);  // windows of T+1 tokens at stride T; n >= 1 by validation
    tokens += n;
  }
  first_.push_back(total_);
  if (total_ == 0) {
    std::string dir = std::filesystem::path(files[0]).parent_path().string();
    if (dir.empty()) dir = ".";
    const std::string what =
        files.size() == 1 ? std::filesystem::path(files[0]).filename().string() : strfmt("%zu shards", files.size());
    throw DataTooShort(strfmt("%s: %s has %zu tokens, too few for one sequence of --seq %d (needs %d)", dir.c_str(),
                              what.c_str(), tokens, T, T + 1));
  }
}

size_t Dataset::num_tokens() const {
  size_t n = 0;
  for (const auto& s : shards_) n += s->size();
  return n;
}

void Dataset::get(size_t i, int* inputs, int* targets) const {
  MC_CHECK(i < total_, "sequence %zu of %zu", i, total_);
  // The shard holding sequence i: the last one whose first index is <= i (empty shards are skipped
  // because their first index equals the next one's).
  const size_t s = size_t(std::upper_bound(first_.begin(), first_.end(), i) - first_.begin()) - 1;
  // One pread of T+1 tokens (Note [Shards are read, not mapped] in data.h); the buffer is reused.
  thread_local std::vector<uint16_t> x;
  x.resize(size_t(T_) + 1);
  shards_[s]->read((i - first_[s]) * size_t(T_), size_t(T_) + 1, x.data());
  for (int t = 0; t < T_; ++t) {
    inputs[t] = int(x[size_t(t)]);
    targets[t] = int(x[size_t(t) + 1]);
  }
}

uint64_t Dataset::fingerprint() const {
  uint64_t h = 0x84222325cbf29ce4ull;
  for (const auto& s : shards_) h = (h ^ s->fingerprint()) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  return h;
}

// ---- Loader ------------------------------------------------------------------------------------

namespace {

// splitmix64 (Steele, Lea, Flood 2014): a 64-bit generator that passes BigCrush, and a good mixer.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Unbiased integer in [0, n), n > 0 (Lemire 2019: multiply-shift with rejection of the short range).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = (unsigned __int128)next() * n;
    uint64_t low = uint64_t(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = (unsigned __int128)next() * n;
        low = uint64_t(m);
      }
    }
    return uint64_t(m >> 64);
  }
};

// The stream seed of epoch e: both inputs pass through the mixer, so nearby seeds and epochs give
// unrelated permutations.
uint64_t epoch_seed(uint64_t seed, uint64_t epoch) {
  SplitMix64 a{seed};
  SplitMix64 b{a.next() ^ (epoch * 0xd1b54a32d192ed03ull)};
  return b.next();
}

}  // namespace

Loader::Loader(const Dataset& ds, uint64_t seed) : ds_(ds), seed_(seed) {
  MC_CHECK(ds.num_sequences() > 0, "empty dataset");
  MC_CHECK(ds.num_sequences() <= uint64_t(UINT32_MAX), "%zu sequences do not fit the 32-bit permutation",
           ds.num_sequences());
}

uint64_t Loader::epoch_of(uint64_t pos) const { return pos / ds_.num_sequences(); }

void Loader::fill(uint64_t pos, int count, int* inputs, int* targets) {
  MC_CHECK(count >= 0, "count %d", count);
  const uint64_t N = ds_.num_sequences();
  const size_t T = size_t(ds_.seq_len());
  for (int k = 0; k < count; ++k) {
    const uint64_t p = pos + uint64_t(k);
    const uint64_t e = p / N;
    if (e != cached_epoch_) {
      // Fisher-Yates over [0, N), drawn from the epoch's own stream.
      perm_.resize(N);
      for (uint64_t i = 0; i < N; ++i) perm_[i] = uint32_t(i);
      SplitMix64 rng{epoch_seed(seed_, e)};
      for (uint64_t i = N - 1; i > 0; --i) std::swap(perm_[i], perm_[rng.below(i + 1)]);
      cached_epoch_ = e;
    }
    ds_.get(perm_[p % N], inputs + size_t(k) * T, targets + size_t(k) * T);
  }
}

}  // namespace mc
