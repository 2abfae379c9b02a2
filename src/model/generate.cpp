// The sampling loop of `sample` (see generate.h).
#include "model/generate.h"

#include <algorithm>
#include <cmath>

namespace mc {

int choose_token(const std::vector<float>& logits, const SampleOptions& opt, Rng& rng) {
  const int V = int(logits.size());
  if (opt.temperature == 0) return int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<std::pair<float, int>> cand(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v) cand[size_t(v)] = {logits[size_t(v)] / opt.temperature, v};
  const int k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  double z = 0;
  for (int j = 0; j < k; ++j) z += std::exp(double(cand[size_t(j)].first - cand[0].first));
  const double u = rng.uniform() * z;
  double acc = 0;
  for (int j = 0; j < k; ++j) {
    acc += std::exp(double(cand[size_t(j)].first - cand[0].first));
    if (u < acc) return cand[size_t(j)].second;
  }
  return cand[size_t(k - 1)].second;
}

std::vector<int> generate(GPT2& model, const std::vector<int>& prompt, const SampleOptions& opt,
                          const std::function<void(int)>& on_token) {
  std::vector<int> seq = prompt, out;
  const int ctx = model.max_seq();
  Rng rng(opt.seed);
  for (int i = 0; i < opt.tokens; ++i) {
    const int len = std::min<int>(int(seq.size()), ctx);
    model.forward(seq.data() + seq.size() - size_t(len), nullptr, 1, len);
    const int next = choose_token(model.logits_at(0, len - 1), opt, rng);
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
  }
  return out;
}

}  // namespace mc
