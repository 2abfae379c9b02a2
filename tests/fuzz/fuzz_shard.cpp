// Fuzz target: token shards (src/data/shard.cpp TokenShard, src/data/dataset.cpp Dataset).
// Input: the bytes of one shard file. An accepted shard must be exactly what its header promises and
// every sequence the Dataset hands out must hold tokens inside the vocabulary it was opened with.
#include <cstdint>
#include <vector>

#include "data/data.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("train_000000.bin", data, size);
  // The byte vocabulary and GPT-2's: the two the trainer opens shards with.
  for (const int vocab : {mc::kByteVocab, mc::kGpt2Vocab}) {
    size_t count = 0;
    if (!fuzz::accepts([&] { count = mc::TokenShard(path, vocab).size(); })) continue;
    if (size != 1024 + 2 * count)
      fuzz::finding(mc::strfmt("shard accepted with %zu tokens but the file has %zu bytes", count, size));
    // A sequence length from the data itself, so short and long windows are both tried.
    const int T = 1 + int(data[size - 1] % 64);
    fuzz::accepts([&] {
      mc::Dataset ds({path}, vocab, T);
      std::vector<int> in(static_cast<size_t>(T)), tg(static_cast<size_t>(T));
      const size_t n = ds.num_sequences();
      for (size_t i = 0; i < n && i < 256; ++i) {
        ds.get(i, in.data(), tg.data());
        for (int t = 0; t < T; ++t)
          if (in[size_t(t)] < 0 || in[size_t(t)] >= vocab || tg[size_t(t)] < 0 || tg[size_t(t)] >= vocab)
            fuzz::finding(mc::strfmt("Dataset returned token %d/%d outside vocabulary %d", in[size_t(t)],
                                     tg[size_t(t)], vocab));
      }
    });
  }
  return 0;
}
