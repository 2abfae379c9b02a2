// Fuzz target: checkpoint files as raw bytes (src/train/checkpoint.cpp load_checkpoint): the
// structure, sizes, trailer and checksum checks. Mutations almost never keep the CRC-32 valid, so the
// metadata's meaning is fuzzed by fuzz_checkpoint_meta instead.
#include <cstdint>

#include "checkpoint_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("ckpt_00000001.bin", data, size);
  mc::LoadedCheckpoint ck;
  if (fuzz::accepts([&] { ck = mc::load_checkpoint(path); })) fuzz::check_accepted(ck);
  fuzz::accepts([&] { mc::read_checkpoint_meta(path); });
  return 0;
}
