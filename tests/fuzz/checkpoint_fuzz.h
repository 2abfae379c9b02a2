// Shared by the two checkpoint targets: a writer of the checkpoint format with arbitrary metadata
// (so the checksum is right whatever the JSON says) and the oracle for an accepted checkpoint.
// Invariant: check_accepted() asks only what eval, sample, export and train --resume read from a
// checkpoint (src/train/commands.cpp, src/train/trainer.cpp): load_checkpoint must refuse anything
// else, since it is the one place every caller goes through.
#pragma once
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "train/checkpoint.h"

namespace fuzz {

// The bytes of a checkpoint file (format: src/train/checkpoint.h) holding `meta_text` verbatim as its
// metadata, followed by data_bytes of tensor data and a valid CRC-32 trailer.
inline std::string checkpoint_bytes(const std::string& meta_text, size_t data_bytes) {
  std::string out("MCCKPT01", 8);
  const uint64_t jl = meta_text.size();
  out.append(reinterpret_cast<const char*>(&jl), 8);
  out += meta_text;
  out.append((64 - out.size() % 64) % 64, '\0');
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(char(i * 37 % 251));  // arbitrary, finite or not
  const uint32_t crc = uint32_t(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(out.data()), uInt(out.size())));
  const uint32_t trailer[2] = {crc, 0};
  out.append(reinterpret_cast<const char*>(trailer), 8);
  out += "MCCKEND1";
  return out;
}

// Bytes of tensor data that metadata declares (sum of tensors[].numel * 4), or 0 when it declares
// none, declares it badly, or more than cap: then the file is simply the wrong size.
inline size_t declared_data_bytes(const nlohmann::json& meta, size_t cap) {
  if (!meta.is_object() || !meta.contains("tensors") || !meta["tensors"].is_array()) return 0;
  size_t total = 0;
  for (const auto& t : meta["tensors"]) {
    if (!t.is_object() || !t.contains("numel") || !t["numel"].is_number_unsigned()) return 0;
    const uint64_t n = t["numel"].get<uint64_t>();
    if (n > cap / 4 || total + 4 * n > cap) return 0;
    total += 4 * size_t(n);
  }
  return total;
}

namespace detail {
inline const nlohmann::json& need(const nlohmann::json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) finding("load_checkpoint accepted metadata without " + where + key);
  return obj[key];
}
// An integer key in [lo, hi] (what .get<int>() / .get<uint64_t>() in the callers need, plus sanity).
inline int64_t need_int(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi,
                        const std::string& where = "") {
  const nlohmann::json& v = need(obj, key, where);
  if (!v.is_number_integer())
    finding(std::string("load_checkpoint accepted ") + where + key + " of JSON type " + v.type_name() + ": " +
            v.dump().substr(0, 60));
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    finding(std::string("load_checkpoint accepted ") + where + key + " = " + v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    finding(mc::strfmt("load_checkpoint accepted %s%s = %lld (callers need [%lld, %lld])", where.c_str(), key,
                       (long long)x, (long long)lo, (long long)hi));
  return x;
}
// An unsigned 64-bit key >= lo (loader_pos and global_batch are read with .get<uint64_t>()).
inline void need_u64(const nlohmann::json& obj, const char* key, uint64_t lo) {
  const nlohmann::json& v = need(obj, key, "");
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0) || v.get<uint64_t>() < lo)
    finding(std::string("load_checkpoint accepted ") + key + " = " + v.dump().substr(0, 60) +
            mc::strfmt(" (callers need an integer >= %llu)", (unsigned long long)lo));
}
inline void maybe_string(const nlohmann::json& obj, const char* key) {
  if (obj.contains(key) && !obj[key].is_string())
    finding(std::string("load_checkpoint accepted ") + key + " of JSON type " + obj[key].type_name());
}
}  // namespace detail

// What the callers rely on once load_checkpoint returned; finding() otherwise.
inline void check_accepted(const mc::LoadedCheckpoint& ck) {
  using detail::need_int;
  const nlohmann::json& meta = ck.meta;
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  const nlohmann::json& m = detail::need(meta, "model", "");
  if (!m.is_object()) finding("load_checkpoint accepted a model that is not an object");
  const int64_t maxT = need_int(m, "max_seq_len", 1, kIntMax, "model.");
  const int64_t V = need_int(m, "vocab_size", 1, kIntMax, "model.");
  const int64_t Vp = need_int(m, "padded_vocab_size", V, kIntMax, "model.");
  const int64_t L = need_int(m, "num_layers", 1, kIntMax, "model.");
  const int64_t NH = need_int(m, "num_heads", 1, kIntMax, "model.");
  const int64_t C = need_int(m, "channels", 1, kIntMax, "model.");
  if (C % NH != 0) finding(mc::strfmt("load_checkpoint accepted channels %lld not divisible by heads %lld",
                                      (long long)C, (long long)NH));
  // The parameter count of src/model/gpt2.cpp's layout, without building it (it could be enormous).
  const unsigned __int128 n = (unsigned __int128)(Vp + maxT) * C +
                              (unsigned __int128)L * (12 * (unsigned __int128)C * C + 13 * (unsigned __int128)C) +
                              2 * (unsigned __int128)C;
  const int64_t seq = need_int(meta, "seq", 1, maxT);
  (void)seq;
  need_int(meta, "step", 0, kIntMax - 1);
  need_int(meta, "adam_t", 0, kIntMax);
  detail::need_u64(meta, "loader_pos", 0);
  detail::need_u64(meta, "global_batch", 1);
  need_int(meta, "world_size", 1, kIntMax);
  detail::maybe_string(meta, "tokenizer");
  detail::maybe_string(meta, "data_dir");
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    bool present = false;
    for (const auto& nm : ck.names) present = present || nm == name;
    if (!present) {
      if (std::strcmp(name, "params") == 0) finding("load_checkpoint accepted a checkpoint without params");
      continue;
    }
    const size_t got = ck.get(name).size();
    if ((unsigned __int128)got != n)
      finding(mc::strfmt("load_checkpoint accepted tensor %s of %zu values for a model of %llu parameters", name, got,
                         (unsigned long long)(n > (unsigned __int128)UINT64_MAX ? UINT64_MAX : uint64_t(n))));
  }
}

}  // namespace fuzz
