// llm.c model-file import/export (see llmc_io.h).
#include "model/llmc_io.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/errors.h"

namespace mc {

namespace {
constexpr int kLlmcMagic = 20240326;
const char* const kLayerKinds[] = {"ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                                   "ln2w", "ln2b", "fcw",  "fcb",  "fcprojw",  "fcprojb"};

// Calls f(tensor) for every tensor in llm.c's file order.
template <class F>
void for_each_llmc_tensor(const ModelConfig& cfg, const ParamLayout& lay, F f) {
  f(lay.find("wte"));
  f(lay.find("wpe"));
  for (const char* kind : kLayerKinds)
    for (int l = 0; l < cfg.num_layers; ++l) f(lay.find("h." + std::to_string(l) + "." + kind));
  f(lay.find("lnf.w"));
  f(lay.find("lnf.b"));
}
}  // namespace

LlmcModel read_llmc_model(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw UsageError("--init-from " + path + ": cannot open: " + std::strerror(errno));
  LlmcModel m;
  try {
    int h[256];
    if (std::fread(h, sizeof(int), 256, f) != 256) throw UsageError(path + ": truncated llm.c model header");
    if (h[0] != kLlmcMagic)
      throw UsageError(path + strfmt(": not an llm.c model file (magic %d, expected %d)", h[0], kLlmcMagic));
    if (h[1] != 3)
      throw UsageError(path + strfmt(": llm.c model version %d is not supported (only 3 = fp32)", h[1]));
    ModelConfig& c = m.cfg;
    c.max_seq_len = h[2];
    c.vocab_size = h[3];
    c.num_layers = h[4];
    c.num_heads = h[5];
    c.channels = h[6];
    c.padded_vocab_size = h[7];
    if (c.max_seq_len <= 0 || c.vocab_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.channels <= 0 ||
        c.padded_vocab_size < c.vocab_size || c.channels % c.num_heads != 0)
      throw UsageError(path + strfmt(": inconsistent llm.c header (maxT %d V %d L %d NH %d C %d Vp %d)", h[2], h[3],
                                     h[4], h[5], h[6], h[7]));
    const ParamLayout lay = make_layout(c);
    m.params.assign(lay.total, 0.0f);
    for_each_llmc_tensor(c, lay, [&](const ParamTensor& t) {
      if (std::fread(m.params.data() + t.offset, sizeof(float), t.numel, f) != t.numel)
        throw UsageError(path + ": truncated llm.c model file (parameters cut off at " + t.name + ")");
    });
    char extra;
    if (std::fread(&extra, 1, 1, f) == 1) throw UsageError(path + ": llm.c model file has trailing bytes");
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  return m;
}

void write_llmc_model(const std::string& path, const ModelConfig& c, const std::vector<float>& params) {
  const ParamLayout lay = make_layout(c);
  MC_CHECK(params.size() == lay.total, "%zu != %zu", params.size(), lay.total);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw RuntimeError(tmp + ": cannot create: " + std::strerror(errno));
  int h[256] = {0};
  h[0] = kLlmcMagic;
  h[1] = 3;
  h[2] = c.max_seq_len;
  h[3] = c.vocab_size;
  h[4] = c.num_layers;
  h[5] = c.num_heads;
  h[6] = c.channels;
  h[7] = c.padded_vocab_size;
  bool ok = std::fwrite(h, sizeof(int), 256, f) == 256;
  for_each_llmc_tensor(c, lay, [&](const ParamTensor& t) {
    ok = ok && std::fwrite(params.data() + t.offset, sizeof(float), t.numel, f) == t.numel;
  });
  ok = (std::fflush(f) == 0) && ok && ::fsync(fileno(f)) == 0;
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw RuntimeError(path + ": cannot write llm.c model file: " + std::strerror(errno));
  }
}

}  // namespace mc
