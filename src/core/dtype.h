// Element types shared by the ops (activations, parameters) and the communicators.
// Header-only. bf16 is stored as uint16_t (the top half of an fp32), rounded to nearest even.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mc {

enum class DType : int { F32 = 0, BF16 = 1, F64 = 2, I32 = 3, I64 = 4 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float";
    case DType::BF16: return "bf16";
    case DType::F64: return "double";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
  }
  return "?";
}

// Parses "float|f32|fp32", "bf16", "double|f64", "int32|int", "int64"; returns false if unknown.
inline bool parse_dtype(const std::string& s, DType* out) {
  if (s == "float" || s == "f32" || s == "fp32") *out = DType::F32;
  else if (s == "bf16" || s == "bfloat16") *out = DType::BF16;
  else if (s == "double" || s == "f64" || s == "fp64") *out = DType::F64;
  else if (s == "int32" || s == "int" || s == "i32") *out = DType::I32;
  else if (s == "int64" || s == "i64") *out = DType::I64;
  else return false;
  return true;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return uint16_t(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element i of a buffer of type dt, as a double (tests and benchmarks use it to fill and check).
inline void dtype_store(void* p, size_t i, DType dt, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(v); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(v); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
  }
}
inline double dtype_load(const void* p, size_t i, DType dt) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}

}  // namespace mc
