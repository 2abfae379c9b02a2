// Fuzz target: safetensors files (src/model/safetensors.cpp read_safetensors_header, read_safetensor_f32),
// what `info` and the export checks read. Input: the bytes of one file. An accepted header must describe
// tensors that tile the data buffer exactly, each as many bytes as its shape and dtype need, so that
// reading any F32 tensor stays inside the file and yields exactly numel values.
#include <cstdint>

#include "fuzz_common.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("model.safetensors", data, size);
  mc::SafetensorsFile f;
  if (!fuzz::accepts([&] { f = mc::read_safetensors_header(path, "fuzz"); })) return 0;
  if (f.file_bytes != size || f.data_offset != 8 + f.header_bytes || f.data_offset > size)
    fuzz::finding(mc::strfmt("accepted a header of %llu bytes (data at %llu) in a file of %zu",
                             (unsigned long long)f.header_bytes, (unsigned long long)f.data_offset, size));
  uint64_t at = 0;
  for (const mc::SafeTensorInfo& t : f.tensors) {
    const size_t es = mc::safetensors_dtype_size(t.dtype);
    if (es == 0 || t.begin != at || t.end < t.begin || t.end - t.begin != t.numel() * es)
      fuzz::finding(mc::strfmt("accepted tensor '%s' (%s) at [%llu, %llu) with %llu elements; expected start %llu",
                               t.name.c_str(), t.dtype.c_str(), (unsigned long long)t.begin,
                               (unsigned long long)t.end, (unsigned long long)t.numel(), (unsigned long long)at));
    at = t.end;
    if (t.dtype == "F32") {
      std::vector<float> v;
      if (!fuzz::accepts([&] { v = mc::read_safetensor_f32(f, t.name); }) || v.size() != t.numel())
        fuzz::finding(mc::strfmt("accepted F32 tensor '%s' cannot be read whole", t.name.c_str()));
    }
  }
  if (f.data_offset + at != size)
    fuzz::finding(mc::strfmt("accepted tensors covering %llu of the %llu data bytes", (unsigned long long)at,
                             (unsigned long long)(size - f.data_offset)));
  return 0;
}
