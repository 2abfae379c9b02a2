// bench-allreduce: all-reduce time and bandwidth per message size over the chosen communicator, printed
// by rank 0 as an nccl-tests style table, with an exact correctness count (#wrong) per size.
// Invariant: every rank runs it with the same flags (the sizes and the collectives must match).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "dist/bench.h"
#include "dist/comm.h"
#include "ops/ops.h"
#include "train/commands.h"

namespace mc {
namespace {

struct BenchFlags {
  size_t min_bytes = 8;
  size_t max_bytes = size_t(32) << 20;  // 32 MiB: a CPU-friendly top size (nccl-tests' own default is larger)
  int factor = 2;
  int iters = 20;
  int warmup = 5;
  std::string dtype = "float";
  std::string op = "sum";
  std::string device = "cpu";
  std::string comm = "auto";
};

// Note [Exact check]
// Rank r's element i is v(r, i) = (r + i) % K + 1, a small positive integer. Every partial result an
// all-reduce can form (sums of subsets of ranks, maxima, minima) is then an integer no larger than
// K * n, which float, double and the integers represent exactly; bf16 holds integers exactly only up
// to 256, so for bf16 K = clamp(256 / n, 1, 4). The result is therefore independent of the reduction
// order and can be compared bit for bit. Avg is Sum followed by one division in the dtype's arithmetic
// (integer division for ints, a float division rounded once for bf16), which is what the expected value
// computes too. (NCCL's ncclAvg pre-multiplies floating-point inputs by 1/n; with a world size that is
// not a power of two its bf16/float averages may then differ in the last bit and count as wrong.)
int pattern_k(DType dt, int n) { return dt == DType::BF16 ? std::clamp(256 / n, 1, 4) : 4; }

double pattern(int r, size_t i, int k) { return double((size_t(r) + i) % size_t(k) + 1); }

void expected_element(void* p, size_t i, DType dt, RedOp op, int n, int k) {
  double sum = 0, mx = 0, mn = 1e300;
  for (int r = 0; r < n; ++r) {
    const double v = pattern(r, i, k);
    sum += v;
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  switch (op) {
    case RedOp::Sum: dtype_store(p, i, dt, sum); return;
    case RedOp::Max: dtype_store(p, i, dt, mx); return;
    case RedOp::Min: dtype_store(p, i, dt, mn); return;
    case RedOp::Avg: break;
  }
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(sum) / float(n); break;
    case DType::F64: static_cast<double*>(p)[i] = sum / double(n); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(sum) / int32_t(n); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(sum) / int64_t(n); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(bf16_to_f32(f32_to_bf16(float(sum))) / float(n)); break;
  }
}

RedOp parse_op(const std::string& s) {
  if (s == "sum") return RedOp::Sum;
  if (s == "avg") return RedOp::Avg;
  if (s == "max") return RedOp::Max;
  if (s == "min") return RedOp::Min;
  throw UsageError("--op " + s + ": unknown reduction (expected sum|avg|max|min)");
}

// Host or device memory for the benchmark buffer, filled and read back through host copies.
class BenchBuffer {
 public:
  BenchBuffer(Ops* ops, size_t bytes) : ops_(ops), host_(bytes / 8 + 1) {
    if (ops_) dev_ = Buffer(*ops_, bytes);
  }
  void* data() { return ops_ ? dev_.get() : static_cast<void*>(host_.data()); }
  void upload(const void* src, size_t bytes) {
    if (bytes == 0) return;
    if (ops_) ops_->upload(dev_.get(), src, bytes);
    else std::memcpy(host_.data(), src, bytes);
  }
  void download(void* dst, size_t bytes) {
    if (bytes == 0) return;
    if (ops_) ops_->download(dst, dev_.get(), bytes);
    else std::memcpy(dst, host_.data(), bytes);
  }
  void synchronize() {
    if (ops_) ops_->synchronize();
  }

 private:
  Ops* ops_;
  std::vector<double> host_;  // 8-byte aligned for every dtype
  Buffer dev_;
};

}  // namespace

// The largest message: 16 GiB (one device buffer of it, and three host copies to fill and check).
constexpr size_t kMaxBenchBytes = size_t(16) << 30;

int cmd_bench_allreduce(int argc, char** argv) {
  BenchFlags f;
  CLI::App app{"All-reduce bandwidth table (nccl-tests style). Launch with: mpirun -np N minicolossus bench-allreduce",
               "bench-allreduce"};
  // Sizes are plain decimal with an optional K/M/G suffix (1024^k), checked here (Note [Numbers on the
  // command line] in commands.cpp skips options typed SIZE); CLI11's AsSizeValue took 0x10 and " 16".
  auto size_option = [&](const char* name, size_t* v, const char* help) {
    app.add_option(name, *v, help)
        ->type_name("SIZE")
        ->transform(CLI::Validator(
            [name](std::string& s) {
              size_t i = 0, n = 0;
              for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i)  // clamped past the limit: refused below
                n = std::min(n * 10 + size_t(s[i] - '0'), kMaxBenchBytes + 1);
              int shift = 0;
              if (i < s.size() && i > 0) {
                const char c = char(s[i] & ~0x20);  // upper case
                shift = c == 'K' ? 10 : c == 'M' ? 20 : c == 'G' ? 30 : -1;
                ++i;
              }
              if (i == 0 || i != s.size() || shift < 0)
                throw UsageError(strfmt("%s %s: not a size (bytes in decimal, or with a K/M/G suffix)", name,
                                        s.c_str()));
              if (n > (kMaxBenchBytes >> shift))
                throw UsageError(strfmt("%s %s: at most %zuG (the buffers take about four times the largest size)",
                                        name, s.c_str(), kMaxBenchBytes >> 30));
              s = std::to_string(n << shift);
              return std::string();
            },
            "", "size"))
        ->capture_default_str();
  };
  size_option("--min-bytes", &f.min_bytes, "smallest message (bytes; suffixes K/M/G = 1024^k)");
  size_option("--max-bytes", &f.max_bytes, "largest message (bytes; suffixes K/M/G)");
  app.add_option("--factor", f.factor, "size multiplier between rows")->capture_default_str();
  app.add_option("--iters", f.iters, "timed all-reduces per size")->capture_default_str();
  app.add_option("--warmup", f.warmup, "untimed all-reduces per size")->capture_default_str();
  app.add_option("--dtype", f.dtype, "float|double|bf16|int32|int64")->capture_default_str();
  app.add_option("--op", f.op, "sum|avg|max|min")->capture_default_str();
  app.add_option("--device", f.device, "cpu|cuda (cuda: device buffers)")->capture_default_str();
  app.add_option("--comm", f.comm, "auto|single|mpi|nccl")->capture_default_str();
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;

  DType dt;
  MC_REQUIRE(parse_dtype(f.dtype, &dt), "--dtype %s: unknown type (expected float|double|bf16|int32|int64)",
             f.dtype.c_str());
  const RedOp op = parse_op(f.op);
  MC_REQUIRE(f.device == "cpu" || f.device == "cuda", "--device %s: unknown device (expected cpu or cuda)",
             f.device.c_str());
  MC_REQUIRE(f.min_bytes >= 1, "--min-bytes must be at least 1");
  MC_REQUIRE(f.max_bytes >= f.min_bytes, "--max-bytes %zu is below --min-bytes %zu", f.max_bytes, f.min_bytes);
  MC_REQUIRE(f.factor >= 2, "--factor %d: must be at least 2", f.factor);
  MC_REQUIRE(f.iters >= 1, "--iters %d: must be at least 1", f.iters);
  MC_REQUIRE(f.warmup >= 0, "--warmup %d: must not be negative", f.warmup);

  // Devices and communicator, in the trainer's order (cmd_train.cpp): the job's world communicator tells
  // the local rank, which picks the GPU; then the communicator of --comm is built once, for those ops.
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Communicator> comm;
  if (f.device == "cuda") ops = make_ops("cuda", make_world_communicator()->local_rank());
  comm = make_communicator(f.comm, ops.get());
  const int n = comm->size();
  const bool root = comm->rank() == 0;
  const size_t esz = dtype_size(dt);
  const int k = pattern_k(dt, n);

  std::vector<size_t> sizes;  // bytes, rounded down to whole elements (at least one), no repeats
  for (size_t b = f.min_bytes; b <= f.max_bytes; b *= size_t(f.factor)) {
    const size_t r = std::max(esz, b / esz * esz);
    if (sizes.empty() || sizes.back() != r) sizes.push_back(r);
    if (b > f.max_bytes / size_t(f.factor)) break;  // next step would overflow or pass the top
  }
  const size_t top = sizes.back();
  BenchBuffer buf(ops.get(), top);
  std::vector<double> fill(top / 8 + 1), want(top / 8 + 1), got(top / 8 + 1);

  if (root) {
    std::printf("# minicolossus bench-allreduce: backend %s, %d rank%s, dtype %s, op %s, device %s, iters %d, warmup %d\n",
                comm->name().c_str(), n, n == 1 ? "" : "s", dtype_name(dt), f.op.c_str(), f.device.c_str(), f.iters,
                f.warmup);
    std::printf("%12s %12s %8s %12s %12s %12s %8s\n", "size(B)", "count", "type", "time(us)", "algbw(GB/s)",
                "busbw(GB/s)", "#wrong");
    std::fflush(stdout);
  }
  double busbw_sum = 0;
  for (size_t bytes : sizes) {
    const size_t count = bytes / esz;
    // One checked all-reduce: Note [Exact check].
    for (size_t i = 0; i < count; ++i) {
      dtype_store(fill.data(), i, dt, pattern(comm->rank(), i, k));
      expected_element(want.data(), i, dt, op, n, k);
    }
    buf.upload(fill.data(), bytes);
    comm->all_reduce(buf.data(), count, dt, op);
    buf.download(got.data(), bytes);
    const char* g = reinterpret_cast<const char*>(got.data());
    const char* w = reinterpret_cast<const char*>(want.data());
    double wrong = 0;
    for (size_t i = 0; i < count; ++i) wrong += std::memcmp(g + i * esz, w + i * esz, esz) != 0;
    wrong = comm->all_reduce_host(wrong, RedOp::Sum);

    for (int i = 0; i < f.warmup; ++i) comm->all_reduce(buf.data(), count, dt, op);
    buf.synchronize();
    comm->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < f.iters; ++i) comm->all_reduce(buf.data(), count, dt, op);
    buf.synchronize();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double slowest = comm->all_reduce_host(secs, RedOp::Max);

    const double us = slowest / f.iters * 1e6;
    const double algbw = double(bytes) / (us * 1e-6) / 1e9;
    const double busbw = algbw * 2.0 * (n - 1) / n;
    busbw_sum += busbw;
    if (root) {
      std::printf("%12zu %12zu %8s %12.2f %12.3f %12.3f %8.0f\n", bytes, count, dtype_name(dt), us, algbw, busbw,
                  wrong);
      std::fflush(stdout);
    }
  }
  if (root) {
    std::printf("# avg busbw: %.3f GB/s over %zu sizes\n", busbw_sum / double(sizes.size()), sizes.size());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace mc
