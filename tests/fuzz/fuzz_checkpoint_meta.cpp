// Fuzz target: checkpoint METADATA (src/train/checkpoint.cpp load_checkpoint). Input: the JSON text
// of the metadata. The target wraps it into a well-formed checkpoint with as much tensor data as the
// JSON declares and a valid CRC-32, so every input gets past the structure and checksum checks and
// exercises the validation of what the metadata says (model shape, step, tensor sizes, types).
#include <cstdint>

#include "checkpoint_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string meta_text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json parsed = nlohmann::json::parse(meta_text, nullptr, /*allow_exceptions=*/false);
  // 64 MiB of tensor data at most: past that the file is written short and must be refused as such.
  const size_t data_bytes = parsed.is_discarded() ? 0 : fuzz::declared_data_bytes(parsed, size_t(64) << 20);
  const std::string bytes = fuzz::checkpoint_bytes(meta_text, data_bytes);
  const std::string path = fuzz::write_input("ckpt_00000002.bin", bytes.data(), bytes.size());
  mc::LoadedCheckpoint ck;
  if (fuzz::accepts([&] { ck = mc::load_checkpoint(path); })) fuzz::check_accepted(ck);
  return 0;
}
