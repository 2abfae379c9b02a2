// Error types and check macros. Header-only (the CUDA library uses it too).
// Invariant: UsageError means "the user's input is wrong" and becomes exit code 2 with its one-line
// message; any other exception becomes exit code 1. Nothing below aborts or prints a stack trace.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace mc {

// printf-style formatting into a std::string.
inline std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string s(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(s.data(), size_t(n) + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

// s on one line: each newline or carriage return becomes the two characters \n or \r. For text from files
// or the command line (a file name, a tensor name) inside a one-line message or a line of a report.
inline std::string one_line(std::string s) {
  for (size_t i = 0; (i = s.find_first_of("\r\n", i)) != std::string::npos; i += 2)
    s.replace(i, 1, s[i] == '\n' ? "\\n" : "\\r");
  return s;
}

// Bad usage or bad input: exit code 2. The message names the flag or file and what is wrong.
struct UsageError : std::runtime_error {
  explicit UsageError(const std::string& m) : std::runtime_error(m) {}
};

// A runtime failure: exit code 1.
struct RuntimeError : std::runtime_error {
  explicit RuntimeError(const std::string& m) : std::runtime_error(m) {}
};

// The rank of this process, for error messages (set once the communicator exists; -1 before).
inline int& error_rank() {
  static int r = -1;
  return r;
}

inline std::string where(const char* file, int line) {
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  if (error_rank() >= 0) return strfmt("[rank %d] %s:%d", error_rank(), base, line);
  return strfmt("%s:%d", base, line);
}

}  // namespace mc

// Internal invariant (a bug if it fails): throws RuntimeError with rank, file and line.
#define MC_CHECK(cond, ...)                                                                  \
  do {                                                                                       \
    if (!(cond))                                                                             \
      throw ::mc::RuntimeError(::mc::where(__FILE__, __LINE__) + ": check failed: " #cond " " \
                               + ::mc::strfmt(__VA_ARGS__));                                 \
  } while (0)

// User-facing input check: throws UsageError (exit 2) with the formatted message.
#define MC_REQUIRE(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw ::mc::UsageError(::mc::strfmt(__VA_ARGS__)); \
  } while (0)
