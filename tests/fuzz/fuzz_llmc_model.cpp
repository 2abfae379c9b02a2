// Fuzz target: llm.c model files (src/model/llmc_io.cpp read_llmc_model).
// Input: the bytes of one model file. An accepted file must describe a model our layout can hold,
// with exactly one fp32 value per parameter, read before any allocation the file cannot back.
#include <cstdint>

#include "fuzz_common.h"
#include "model/llmc_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("model.bin", data, size);
  mc::LlmcModel m;
  if (!fuzz::accepts([&] { m = mc::read_llmc_model(path); })) return 0;
  const mc::ModelConfig& c = m.cfg;
  if (c.num_heads <= 0 || c.channels <= 0 || c.channels % c.num_heads != 0 || c.num_layers <= 0 ||
      c.max_seq_len <= 0 || c.vocab_size <= 0 || c.padded_vocab_size < c.vocab_size)
    fuzz::finding(mc::strfmt("accepted an impossible model: maxT %d V %d Vp %d L %d NH %d C %d", c.max_seq_len,
                             c.vocab_size, c.padded_vocab_size, c.num_layers, c.num_heads, c.channels));
  const size_t total = mc::make_layout(c).total;
  if (m.params.size() != total || size != 1024 + 4 * total)
    fuzz::finding(mc::strfmt("accepted %zu parameters from %zu bytes, the layout has %zu", m.params.size(), size,
                             total));
  return 0;
}
