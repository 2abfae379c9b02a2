// llm.c model-file import/export (see llmc_io.h).
#include "model/llmc_io.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/files.h"

namespace mc {

namespace {
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

size_t validate_model_config(const ModelConfig& c, const std::string& where) {
  auto field = [&](const char* name, int v, int lo, int hi) {
    if (v < lo || v > hi)
      throw UsageError(where + strfmt(": model %s %d is out of range [%d, %d]", name, v, lo, hi));
  };
  field("max_seq_len", c.max_seq_len, 1, kMaxSeqLen);
  field("vocab_size", c.vocab_size, 1, kMaxVocab);
  field("padded_vocab_size", c.padded_vocab_size, 1, kMaxPaddedVocab);
  field("num_layers", c.num_layers, 1, kMaxLayers);
  field("channels", c.channels, 1, kMaxChannels);
  field("num_heads", c.num_heads, 1, c.channels);
  if (c.padded_vocab_size < c.vocab_size)
    throw UsageError(where + strfmt(": model padded_vocab_size %d is smaller than vocab_size %d", c.padded_vocab_size,
                                    c.vocab_size));
  if (c.channels % c.num_heads != 0)
    throw UsageError(where + strfmt(": model channels %d is not a multiple of num_heads %d", c.channels, c.num_heads));
  // With the bounds above the count is < 2^56: the layout's size_t arithmetic cannot overflow.
  return make_layout(c).total;
}

ModelConfig llmc_header_model(const int32_t* h) {
  ModelConfig c;
  c.max_seq_len = h[2];
  c.vocab_size = h[3];
  c.num_layers = h[4];
  c.num_heads = h[5];
  c.channels = h[6];
  c.padded_vocab_size = h[7];
  return c;
}

uint64_t llmc_model_bytes(const ModelConfig& c, int version) {
  const uint64_t elem = version == kLlmcBf16 ? 2 : 4;
  return 256 * sizeof(int32_t) + uint64_t(make_layout(c).total) * elem;
}

LlmcModel read_llmc_model(const std::string& path, const std::string& what) {
  const std::string who = what.empty() ? path : what + " " + path;
  const int fd = open_input_file(path, what);
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw UsageError(who + ": cannot stat: " + std::strerror(errno));
  const uint64_t file_bytes = uint64_t(st.st_size);
  int32_t h[256];
  if (file_bytes < sizeof h || pread_full(fd, h, sizeof h, 0, path) != sizeof h)
    throw UsageError(who + strfmt(": truncated llm.c model header (%llu bytes, the header is %zu)",
                                  (unsigned long long)file_bytes, sizeof h));
  if (h[0] != kLlmcModelMagic)
    throw UsageError(who + strfmt(": not an llm.c model file (magic %d, expected %d)", h[0], kLlmcModelMagic));
  if (h[1] != kLlmcFp32 && h[1] != kLlmcBf16)
    throw UsageError(who + strfmt(": llm.c model version %d is not supported (3 = fp32 and 5 = bf16 are)", h[1]));
  LlmcModel m;
  m.version = h[1];
  m.cfg = llmc_header_model(h);
  const ModelConfig& c = m.cfg;
  validate_model_config(c, who + " (llm.c header)");
  const uint64_t want = llmc_model_bytes(c, m.version);
  if (file_bytes != want)
    throw UsageError(who + strfmt(": llm.c model version %d (%s) file has %llu bytes but its header (maxT %d V %d L "
                                  "%d NH %d C %d Vp %d) needs %llu (%s)",
                                  h[1], h[1] == kLlmcBf16 ? "bf16" : "fp32", (unsigned long long)file_bytes, h[2],
                                  h[3], h[4], h[5], h[6], h[7],
                                  (unsigned long long)want, file_bytes < want ? "truncated" : "trailing bytes"));
  const ParamLayout lay = make_layout(c);
  m.params.assign(lay.total, 0.0f);
  uint64_t off = sizeof h;
  std::vector<uint16_t> half;  // one bf16 tensor at a time
  for_each_llmc_tensor(c, lay, [&](const ParamTensor& t) {
    float* dst = m.params.data() + t.offset;
    const size_t bytes = t.numel * (m.version == kLlmcBf16 ? 2 : 4);
    void* buf = dst;
    if (m.version == kLlmcBf16) {
      half.resize(t.numel);
      buf = half.data();
    }
    if (pread_full(fd, buf, bytes, off, path) != bytes)
      throw UsageError(who + ": truncated llm.c model file (parameters cut off at " + t.name + ")");
    if (m.version == kLlmcBf16)
      for (size_t i = 0; i < t.numel; ++i) dst[i] = bf16_to_f32(half[i]);
    // A NaN or infinite weight is a damaged file, not a model: eval would print "val_loss nan" and
    // sample repeat one token, both with exit 0.
    for (size_t i = 0; i < t.numel; ++i)
      if (!std::isfinite(dst[i]))
        throw UsageError(who + strfmt(": parameter %s[%zu] is %s (a damaged file: weights must be finite)",
                                      t.name.c_str(), i, std::isnan(dst[i]) ? "NaN" : "infinite"));
    off += bytes;
  });
  return m;
}

void write_llmc_model(const std::string& path, const ModelConfig& c, const std::vector<float>& params, int version) {
  MC_CHECK(version == kLlmcFp32 || version == kLlmcBf16, "llm.c model version %d", version);
  validate_model_config(c, path);  // never write a file read_llmc_model would refuse
  const ParamLayout lay = make_layout(c);
  MC_CHECK(params.size() == lay.total, "%zu != %zu", params.size(), lay.total);
  int32_t h[256] = {0};
  h[0] = kLlmcModelMagic;
  h[1] = version;
  h[2] = c.max_seq_len;
  h[3] = c.vocab_size;
  h[4] = c.num_layers;
  h[5] = c.num_heads;
  h[6] = c.channels;
  h[7] = c.padded_vocab_size;
  std::vector<std::pair<const void*, size_t>> parts = {{h, sizeof h}};
  std::vector<uint16_t> half;  // the whole bf16 copy, in file order
  if (version == kLlmcBf16) half.reserve(lay.total);
  for_each_llmc_tensor(c, lay, [&](const ParamTensor& t) {
    if (version == kLlmcFp32) {
      parts.emplace_back(params.data() + t.offset, t.numel * sizeof(float));
    } else {
      for (size_t i = 0; i < t.numel; ++i) half.push_back(f32_to_bf16(params[t.offset + i]));
    }
  });
  if (version == kLlmcBf16) parts.emplace_back(half.data(), half.size() * sizeof(uint16_t));
  write_file_atomic(path, parts);
}

}  // namespace mc
