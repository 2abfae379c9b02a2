// Finding and opening cuBLASLt and NCCL at run time (Note [Run-time libraries] in dynlib.h).
#include "core/dynlib.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/errors.h"

namespace mc {
namespace {

struct Loaded {
  void* handle = nullptr;
  std::string path;   // where it came from
  std::string error;  // why it could not be loaded (when handle is null)
};

std::mutex g_mu;
std::map<std::string, Loaded>& loaded() {  // by key()
  static std::map<std::string, Loaded> m;
  return m;
}
// One entry per (override variable, soname): the same soname under another variable is another search.
std::string key(const RuntimeLibrary& lib) { return lib.env + "|" + lib.soname; }

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// dlopen with the reason on failure.
void* try_open(const std::string& what, std::string* why) {
  ::dlerror();
  void* h = ::dlopen(what.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = ::dlerror();
    *why = e ? e : (what + ": cannot be opened");
  }
  return h;
}

// The directories of Python's `nvidia` namespace package (pip's nvidia-* wheels), asked of python3 once.
const std::vector<std::string>& python_nvidia_dirs() {
  static std::vector<std::string> dirs;
  static bool probed = false;
  if (probed) return dirs;
  probed = true;
  FILE* p = ::popen(
      "python3 -c 'import nvidia, sys; sys.stdout.write(\"\\n\".join(list(nvidia.__path__)))' </dev/null 2>/dev/null",
      "r");
  if (!p) return dirs;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    if (end > start) dirs.push_back(out.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

// The file a handle was loaded from (for reports).
std::string path_of(void* handle, const std::string& fallback) {
  struct link_map* lm = nullptr;
  if (::dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && *lm->l_name) return lm->l_name;
  return fallback;
}

// The search of Note [Run-time libraries]; fills `out` (handle and path, or the reason it failed).
void search(const RuntimeLibrary& lib, Loaded* out) {
  std::string why;
  // 1. The user's override: only that.
  const std::string over = env_or_empty(lib.env.c_str());
  if (!over.empty()) {
    const std::string file = is_dir(over) ? over + "/" + lib.soname : over;
    if (!is_file(file)) {
      out->error = strfmt("%s=%s: no such file", lib.env.c_str(), file.c_str());
      return;
    }
    if ((out->handle = try_open(file, &why))) {
      out->path = file;
      return;
    }
    out->error = strfmt("%s=%s: %s", lib.env.c_str(), over.c_str(), why.c_str());
    return;
  }
  // 2. The loader's own search.
  if ((out->handle = try_open(lib.soname, &why))) {
    out->path = path_of(out->handle, lib.soname);
    return;
  }
  std::vector<std::string> broken;  // files that exist but would not load, with the loader's reason
  auto try_file = [&](const std::string& file) {
    if (!is_file(file)) return false;
    std::string e;
    if ((out->handle = try_open(file, &e))) {
      out->path = file;
      return true;
    }
    broken.push_back(e);
    return false;
  };
  // 3. The CUDA toolkit.
  std::vector<std::string> roots;
  if (lib.in_toolkit) {
    for (const char* v : {"CUDA_HOME", "CUDA_PATH"})
      if (!env_or_empty(v).empty()) roots.push_back(env_or_empty(v));
    roots.push_back("/usr/local/cuda");
    for (const std::string& r : roots)
      for (const char* sub : {"/lib64/", "/lib/", "/targets/x86_64-linux/lib/"})
        if (try_file(r + sub + lib.soname)) return;
  }
  // 4. NVIDIA's Python packages.
  for (const std::string& d : python_nvidia_dirs())
    for (const std::string& sub : lib.python_subdirs)
      if (try_file(d + "/" + sub + "/" + lib.soname)) return;

  std::string looked = "not on the library path";
  if (lib.in_toolkit) {
    looked += ", not in the CUDA toolkit (";
    for (size_t i = 0; i < roots.size(); ++i) looked += (i ? ", " : "") + roots[i];
    looked += ")";
  }
  looked += python_nvidia_dirs().empty() ? ", no NVIDIA Python packages found by python3"
                                          : ", not in NVIDIA's Python packages";
  for (const std::string& b : broken) looked += "; " + b;
  out->error = looked;
}

Loaded& find_or_load(const RuntimeLibrary& lib) {
  auto& m = loaded();
  auto it = m.find(key(lib));
  if (it != m.end()) return it->second;
  Loaded& l = m[key(lib)];
  search(lib, &l);
  return l;
}

}  // namespace

void* open_runtime_library(const RuntimeLibrary& lib, const std::string& flag) {
  std::lock_guard<std::mutex> lk(g_mu);
  const Loaded& l = find_or_load(lib);
  if (l.handle) return l.handle;
  throw UsageError(strfmt("%s: cannot load %s (%s): %s; set %s to the library file or its directory", flag.c_str(),
                          lib.name.c_str(), lib.soname.c_str(), l.error.c_str(), lib.env.c_str()));
}

bool runtime_library_available(const RuntimeLibrary& lib) {
  std::lock_guard<std::mutex> lk(g_mu);
  return find_or_load(lib).handle != nullptr;
}

std::string runtime_library_path(const RuntimeLibrary& lib) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = loaded().find(key(lib));
  return it != loaded().end() && it->second.handle ? it->second.path : std::string();
}

void* runtime_symbol(const RuntimeLibrary& lib, const char* symbol) {
  void* handle = nullptr;
  std::string path;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    const Loaded& l = find_or_load(lib);
    if (!l.handle)
      throw RuntimeError(strfmt("%s (%s) is needed but cannot be loaded: %s", lib.name.c_str(), lib.soname.c_str(),
                                l.error.c_str()));
    handle = l.handle;
    path = l.path;
  }
  ::dlerror();
  void* p = ::dlsym(handle, symbol);
  if (!p)
    throw RuntimeError(strfmt("%s: %s has no symbol %s (a newer %s is needed)", path.c_str(), lib.name.c_str(), symbol,
                              lib.name.c_str()));
  return p;
}

const RuntimeLibrary& cublaslt_library() {
  static const RuntimeLibrary lib{"cuBLASLt", "libcublasLt.so.13", "MC_CUBLASLT_LIB", {"cublas/lib", "cu13/lib"}, true};
  return lib;
}

const RuntimeLibrary& nccl_library() {
  static const RuntimeLibrary lib{"NCCL", "libnccl.so.2", "MC_NCCL_LIB", {"nccl/lib", "cu13/lib"}, true};
  return lib;
}

}  // namespace mc
