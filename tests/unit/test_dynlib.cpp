// The run-time library loader (src/core/dynlib.h) and the cuBLASLt / NCCL forwarding shims: a library
// is found through its override variable, the loader path or the CUDA toolkit; a missing one is one
// usage-error line naming the flag, the library and the variable; the shims reach the real library
// (version queries need no GPU, so they run here).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/dynlib.h"
#include "core/errors.h"
#ifdef MC_HAVE_CUDA
#include <cublasLt.h>

#include "ops/cuda/cuda_ops.h"
#endif
#ifdef MC_HAVE_NCCL
#include "dist/backends.h"
#endif

namespace mc {
namespace {

// Sets an environment variable for one scope.
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(const std::string& n, const std::string& v) : name(n), had(std::getenv(n.c_str()) != nullptr) {
    if (had) old = std::getenv(n.c_str());
    ::setenv(n.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

// zlib: present on every machine that builds us (a dependency), with a symbol to look up.
RuntimeLibrary zlib(const std::string& env) { return {"zlib", "libz.so.1", env, {}, false}; }

TEST(Dynlib, MissingLibraryIsOneUsageLine) {
  const RuntimeLibrary lib{"Nothing", "libmc_no_such_library.so.7", "MC_TEST_NOTHING_LIB", {"nothing/lib"}, true};
  EXPECT_FALSE(runtime_library_available(lib));
  try {
    open_runtime_library(lib, "--device cuda");
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const char* part : {"--device cuda: cannot load Nothing (libmc_no_such_library.so.7)", "not on the library path",
                             "/usr/local/cuda", "MC_TEST_NOTHING_LIB"})
      EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
  }
  EXPECT_EQ(runtime_library_path(lib), "");
  EXPECT_THROW(runtime_symbol(lib, "anything"), RuntimeError);
}

TEST(Dynlib, FoundOnTheLoaderPathWithSymbols) {
  const RuntimeLibrary lib = zlib("MC_TEST_ZLIB_UNSET");
  ASSERT_TRUE(runtime_library_available(lib));
  EXPECT_NE(open_runtime_library(lib, "--x"), nullptr);
  EXPECT_NE(runtime_library_path(lib).find("libz.so.1"), std::string::npos) << runtime_library_path(lib);
  using Fn = const char* (*)();
  const char* v = reinterpret_cast<Fn>(runtime_symbol(lib, "zlibVersion"))();
  EXPECT_EQ(v[0], '1') << v;
  try {
    runtime_symbol(lib, "mc_no_such_symbol");
    FAIL() << "expected RuntimeError";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("mc_no_such_symbol"), std::string::npos) << e.what();
  }
}

// The override variable is the only place looked at when it is set: a wrong one is an error, even
// though the library is on the loader path.
TEST(Dynlib, OverrideVariableIsObeyed) {
  ASSERT_TRUE(runtime_library_available(zlib("MC_TEST_ZLIB_UNSET")));
  {
    ScopedEnv env("MC_TEST_ZLIB_BAD", "/nonexistent/dir/libz.so.1");
    try {
      open_runtime_library(zlib("MC_TEST_ZLIB_BAD"), "--comm nccl");
      FAIL() << "expected UsageError";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--comm nccl: cannot load zlib (libz.so.1): "
                                           "MC_TEST_ZLIB_BAD=/nonexistent/dir/libz.so.1: no such file"),
                std::string::npos)
          << e.what();
    }
  }
  // A directory holding the library works too.
  const std::string real = runtime_library_path(zlib("MC_TEST_ZLIB_UNSET"));
  ASSERT_FALSE(real.empty());
  ScopedEnv env("MC_TEST_ZLIB_DIR", real.substr(0, real.rfind('/')));
  EXPECT_NE(open_runtime_library(zlib("MC_TEST_ZLIB_DIR"), "--x"), nullptr);
  EXPECT_EQ(runtime_library_path(zlib("MC_TEST_ZLIB_DIR")), real.substr(0, real.rfind('/')) + "/libz.so.1");
}

#ifdef MC_HAVE_CUDA
// The cuBLASLt shim reaches the toolkit's library (the CI machines have the CUDA toolkit; a machine
// without cuBLASLt anywhere gets the usage error instead, which is what --device cuda reports there).
TEST(Dynlib, CublasLtShimReachesTheLibrary) {
  if (!runtime_library_available(cublaslt_library())) {
    EXPECT_THROW(load_cublaslt(), UsageError);
    GTEST_SKIP() << "cuBLASLt is not installed here";
  }
  EXPECT_NO_THROW(load_cublaslt());
  EXPECT_GE(cublasLtGetVersion(), size_t(130000)) << "cuBLASLt 13 or newer";
  EXPECT_GT(std::string(cublasLtGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED)).size(), 0u);
  EXPECT_NE(runtime_library_path(cublaslt_library()).find("libcublasLt.so.13"), std::string::npos);
}
#endif

#ifdef MC_HAVE_NCCL
TEST(Dynlib, NcclShimReachesTheLibrary) {
  if (!runtime_library_available(nccl_library())) {
    EXPECT_THROW(load_nccl(), UsageError);
    GTEST_SKIP() << "NCCL is not installed here";
  }
  EXPECT_NO_THROW(load_nccl());
  const std::string v = nccl_version_string();
  EXPECT_EQ(v.rfind("2.", 0), 0u) << v;
}
#endif

}  // namespace
}  // namespace mc
