// Autoregressive sampling from a GPT2: the loop `sample` runs, kept apart from the CLI so that it can
// be tested and benchmarked on its own.
// Invariant: for the same model, prompt, options and seed the tokens are the same whichever path
// computes the logits (the KV-cached one or the full-context one), up to rounding deciding a near-tie:
// fp32 rounding on the cpu, bf16 rounding on cuda (Note [Cached tokens] in generate.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.h"
#include "model/gpt2.h"

namespace mc {

struct SampleOptions {
  int tokens = 200;           // new tokens to generate
  float temperature = 1.0f;   // 0: greedy (argmax)
  int top_k = 0;              // sample among the k most likely tokens (0: all)
  uint64_t seed = 1337;
  bool kv_cache = true;       // reuse the keys and values of earlier positions (ops without it recompute)
};

// Continues prompt (at least one token, every one < vocab_size) with opt.tokens new tokens, calling
// on_token(id) as each is chosen, and returns the new tokens. The model must have been built for
// batch >= 1 and a sequence length >= min(max_seq_len, prompt.size() + opt.tokens); once the context is
// full, the window slides (the oldest tokens drop out).
std::vector<int> generate(GPT2& model, const std::vector<int>& prompt, const SampleOptions& opt,
                          const std::function<void(int)>& on_token = nullptr);

// The next token from one position's logits (vocab_size of them), with the options' temperature and
// top-k, drawing from rng. Exposed for tests.
int choose_token(const std::vector<float>& logits, const SampleOptions& opt, Rng& rng);

}  // namespace mc
