// The sampling loop of `sample` (see generate.h).
#include "model/generate.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace mc {

// The candidates are ranked by logit (dividing by a positive temperature keeps the order), and weighed
// exp((l - l_max) / temperature) in double: dividing first, as before, turned the logits into inf and
// NaN for a tiny temperature (1e-40), and picked from the least likely tokens. Now a tiny temperature
// is greedy, as it should be in the limit.
int choose_token(const std::vector<float>& logits, const SampleOptions& opt, Rng& rng) {
  const int V = int(logits.size());
  if (opt.temperature == 0) return int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<std::pair<float, int>> cand(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v) cand[size_t(v)] = {logits[size_t(v)], v};
  const int k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  const double top = cand[0].first, temp = opt.temperature;
  auto weight = [&](int j) { return std::exp((double(cand[size_t(j)].first) - top) / temp); };
  double z = 0;
  for (int j = 0; j < k; ++j) z += weight(j);
  const double u = rng.uniform() * z;
  double acc = 0;
  for (int j = 0; j < k; ++j) {
    acc += weight(j);
    if (u < acc) return cand[size_t(j)].second;
  }
  return cand[size_t(k - 1)].second;
}

// Note [Cached tokens]
// Both paths feed choose_token() the logits of the same context, so they pick the same tokens as long
// as the logits agree well enough: the cached ones differ from forward()'s only by BLAS summation
// order (~1e-6 relative, Note [KV cache] in gpt2.cpp), and a token can change only where that moves
// a decision boundary: two top logits within ~1e-6 of each other (greedy, top-k membership), or the
// uniform draw u landing within ~1e-6 of a cumulative-probability boundary. For continuous random
// weights and draws each has probability ~1e-6 per token, so the paths are "identical for the same
// seed" in practice, not by construction; tests/unit/test_generate.cpp checks many seeds, settings
// and the window overflow. The RNG is consumed identically on both paths (one draw per token).
// On cuda the two paths agree only to bf16 tolerance (Note [KV cache] in gpt2.cpp: the logits
// themselves are stored in bf16, and the full forward's flash attention rounds its probabilities to
// bf16 where the decode kernel does not), so near-ties are far more common: the same seed gives the
// same text up to the first near-tie, and two equally plausible continuations after it.
// Once the context is full the cached path re-runs the whole last window every token (positions
// cannot shift), so past max_seq() it is only as fast as the uncached one, but gives the same tokens.
std::vector<int> generate(GPT2& model, const std::vector<int>& prompt, const SampleOptions& opt,
                          const std::function<void(int)>& on_token) {
  MC_CHECK(!prompt.empty(), "generate: empty prompt");
  std::vector<int> seq = prompt, out;
  const int ctx = model.max_seq();
  Rng rng(opt.seed);
  // The last min(len, ctx) tokens of seq: the context the next token is predicted from.
  auto window = [&](int* len) {
    *len = std::min<int>(int(seq.size()), ctx);
    return seq.data() + seq.size() - size_t(*len);
  };
  const bool cached = opt.kv_cache && model.kv_cache_supported();
  if (cached) model.kv_reset();
  for (int i = 0; i < opt.tokens; ++i) {
    int len = 0;
    const int* w = window(&len);
    std::vector<float> logits;
    if (!cached) {
      model.forward(w, nullptr, 1, len);
      logits = model.logits_at(0, len - 1);
    } else if (model.kv_len() > 0 && model.kv_len() + 1 == len) {
      logits = model.forward_cached(w + len - 1, 1);  // the cache holds all but the newest token
    } else {
      model.kv_reset();  // first token, or the window slid: (re-)run the whole window
      logits = model.forward_cached(w, len);
    }
    const int next = choose_token(logits, opt, rng);
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
  }
  return out;
}

}  // namespace mc
