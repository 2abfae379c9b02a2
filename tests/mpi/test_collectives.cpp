// Every collective of the mpi and staged communicators under mpirun (2 and 4 ranks), with answers in
// closed form: rank-filled buffers reduce to n(n-1)/2 etc. Covers every dtype and op, odd and empty
// sizes, chunked large counts, async issue/wait, uneven reduce_scatter/all_gather, non-zero roots,
// host scalars, staging through a fake device and through real GPU memory (skipped without a GPU:
// every rank must see one), and split communicators.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <functional>
#include <vector>

#include "core/errors.h"
#include "dist/backends.h"
#include "dist/comm.h"
#include "dist/comm_mpi.h"
#include "ops/ops.h"

using namespace mc;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

const DType kTypes[] = {DType::F32, DType::F64, DType::I32, DType::I64, DType::BF16};
const RedOp kOps[] = {RedOp::Sum, RedOp::Avg, RedOp::Max, RedOp::Min};
const char* op_name(RedOp op) {
  return op == RedOp::Sum ? "sum" : op == RedOp::Avg ? "avg" : op == RedOp::Max ? "max" : "min";
}
bool is_int(DType dt) { return dt == DType::I32 || dt == DType::I64; }

// A host buffer of n elements of dt (8-byte aligned), read and written as doubles. The values used are
// small integers (or halves), exact in every dtype including bf16.
struct Buf {
  DType dt;
  size_t n;
  std::vector<double> storage;
  Buf(DType dt_, size_t n_) : dt(dt_), n(n_), storage((n_ * dtype_size(dt_)) / 8 + 1) {}
  void* data() { return storage.data(); }
  void set(size_t i, double v) { dtype_store(storage.data(), i, dt, v); }
  double get(size_t i) const { return dtype_load(storage.data(), i, dt); }
  void fill(const std::function<double(size_t)>& f) {
    for (size_t i = 0; i < n; ++i) set(i, f(i));
  }
};

// Rank r's element i is r + i % 5; the closed forms of each op over n ranks.
double value(int r, size_t i) { return double(r) + double(i % 5); }
double expected(RedOp op, DType dt, int n, size_t i) {
  const double base = double(i % 5);
  switch (op) {
    case RedOp::Sum: return n * (n - 1) / 2.0 + n * base;
    case RedOp::Max: return (n - 1) + base;
    case RedOp::Min: return base;
    case RedOp::Avg:
      if (is_int(dt)) return double((n * (n - 1) / 2 + n * int64_t(base)) / n);  // integer division
      return (n - 1) / 2.0 + base;
  }
  return 0;
}

// Counts all mismatches, reporting the first few.
int check_all(const Buf& b, size_t begin, size_t end, const std::function<double(size_t)>& want, const char* what) {
  int bad = 0;
  for (size_t i = begin; i < end; ++i) {
    if (b.get(i) != want(i)) {
      if (bad < 3) ADD_FAILURE() << what << " dtype " << dtype_name(b.dt) << " element " << i << ": got " << b.get(i)
                                 << ", want " << want(i);
      ++bad;
    }
  }
  return bad;
}

// Uneven counts, one per rank, with a zero and differing sizes: e.g. {3, 0} on 2 ranks, {3, 0, 1001, 7}
// on 4.
std::vector<size_t> uneven_counts(int n) {
  std::vector<size_t> c(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) c[size_t(r)] = r == 1 ? 0 : r == 2 ? 1001 : size_t(3 + 4 * (r / 3));
  return c;
}

TEST(MpiComm, Identity) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  EXPECT_EQ(c->name(), "mpi");
  EXPECT_EQ(c->rank(), world_rank());
  EXPECT_EQ(c->size(), world_size());
  EXPECT_FALSE(c->device_buffers());
  // mpirun on one machine: every rank is on this node.
  EXPECT_EQ(c->local_size(), world_size());
  EXPECT_EQ(c->local_rank(), world_rank());
  c->barrier();
}

TEST(MpiComm, AllReduceEveryDtypeOpAndSize) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int n = c->size(), r = c->rank();
  for (DType dt : kTypes)
    for (RedOp op : kOps)
      for (size_t count : {size_t(0), size_t(1), size_t(7), size_t(1000003)}) {
        Buf b(dt, count);
        b.fill([&](size_t i) { return value(r, i); });
        c->all_reduce(b.data(), count, dt, op);
        EXPECT_EQ(check_all(b, 0, count, [&](size_t i) { return expected(op, dt, n, i); }, op_name(op)), 0)
            << "count " << count;
      }
}

TEST(MpiComm, ClosedFormOfRankFilledBuffers) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int n = c->size();
  std::vector<double> x(10, double(c->rank()));
  c->all_reduce(x.data(), x.size(), DType::F64, RedOp::Sum);
  for (double v : x) EXPECT_EQ(v, n * (n - 1) / 2.0);
  std::vector<int32_t> y(10, c->rank());
  c->all_reduce(y.data(), y.size(), DType::I32, RedOp::Avg);
  for (int32_t v : y) EXPECT_EQ(v, (n * (n - 1) / 2) / n);
}

// Note [Large counts] in comm_mpi.cpp: chunks of 1000 elements exercise the > INT_MAX path.
TEST(MpiComm, ChunkedAllReduceAndBroadcast) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD, 1000);
  const int n = c->size(), r = c->rank();
  for (DType dt : {DType::F32, DType::BF16, DType::I64}) {
    Buf b(dt, 1000003);
    b.fill([&](size_t i) { return value(r, i); });
    c->all_reduce(b.data(), b.n, dt, RedOp::Avg);
    EXPECT_EQ(check_all(b, 0, b.n, [&](size_t i) { return expected(RedOp::Avg, dt, n, i); }, "chunked avg"), 0);
    const int root = n - 1;
    b.fill([&](size_t i) { return r == root ? double(i % 11) : -1.0; });
    c->broadcast(b.data(), b.n, dt, root);
    EXPECT_EQ(check_all(b, 0, b.n, [](size_t i) { return double(i % 11); }, "chunked broadcast"), 0);
  }
}

TEST(MpiComm, AsyncIssueSeveralThenWait) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int n = c->size(), r = c->rank();
  for (bool reverse : {false, true}) {
    std::vector<Buf> bufs;
    const size_t counts[] = {7, 100000, 1, 0, 33333, 4096};
    for (size_t k = 0; k < 6; ++k) {
      bufs.emplace_back(kTypes[k % 5], counts[k]);
      bufs.back().fill([&](size_t i) { return value(r, i); });
    }
    std::vector<CommHandle> hs;
    for (size_t k = 0; k < bufs.size(); ++k)
      hs.push_back(c->all_reduce_async(bufs[k].data(), bufs[k].n, bufs[k].dt, kOps[k % 4]));
    for (size_t j = 0; j < hs.size(); ++j) hs[reverse ? hs.size() - 1 - j : j]->wait();
    for (size_t k = 0; k < bufs.size(); ++k) {
      const RedOp op = kOps[k % 4];
      EXPECT_EQ(check_all(bufs[k], 0, bufs[k].n, [&](size_t i) { return expected(op, bufs[k].dt, n, i); }, "async"), 0)
          << "job " << k << (reverse ? " (waited in reverse)" : "");
    }
    for (auto& h : hs) h->wait();  // waiting again is harmless
  }
}

// Reduce-scatter leaves rank r's segment, at its own offset, reduced; checked for uneven, equal and
// even_split counts.
void check_reduce_scatter(Communicator& c, const std::vector<size_t>& counts) {
  const int n = c.size(), r = c.rank();
  const std::vector<size_t> off = segment_offsets(counts);
  for (DType dt : kTypes)
    for (RedOp op : kOps) {
      Buf b(dt, off.back());
      b.fill([&](size_t i) { return value(r, i); });
      c.reduce_scatter(b.data(), counts, dt, op);
      EXPECT_EQ(check_all(b, off[r], off[r + 1], [&](size_t i) { return expected(op, dt, n, i); }, op_name(op)), 0)
          << "reduce_scatter segment of rank " << r << " (" << counts[r] << " elements at " << off[r] << ")";
    }
}

TEST(MpiComm, ReduceScatterUneven) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  check_reduce_scatter(*c, uneven_counts(c->size()));
  check_reduce_scatter(*c, std::vector<size_t>(size_t(c->size()), 5));
  check_reduce_scatter(*c, even_split(1000003, c->size()));
  check_reduce_scatter(*c, std::vector<size_t>(size_t(c->size()), 0));
}

TEST(MpiComm, ReduceScatterCountMismatchIsAnError) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  float x[4] = {0, 0, 0, 0};
  EXPECT_THROW(c->reduce_scatter(x, std::vector<size_t>(size_t(c->size()) + 1, 1), DType::F32, RedOp::Sum),
               RuntimeError);
  c->barrier();  // the communicator still works
}

TEST(MpiComm, AllGatherUneven) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int r = c->rank();
  for (const auto& counts : {uneven_counts(c->size()), even_split(100001, c->size())}) {
    const std::vector<size_t> off = segment_offsets(counts);
    auto owner_value = [&](size_t i) {
      size_t o = 0;
      while (off[o + 1] <= i) ++o;
      return double(10 * o + i % 7);
    };
    for (DType dt : kTypes) {
      Buf b(dt, off.back());
      b.fill([&](size_t i) { return i >= off[r] && i < off[r + 1] ? owner_value(i) : -3.0; });
      c->all_gather(b.data(), counts, dt);
      EXPECT_EQ(check_all(b, 0, b.n, owner_value, "all_gather"), 0);
    }
  }
}

TEST(MpiComm, BroadcastFromNonZeroRoot) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int r = c->rank();
  for (int root : {c->size() - 1, c->size() / 2}) {
    for (DType dt : kTypes) {
      Buf b(dt, 1001);
      b.fill([&](size_t i) { return r == root ? double(i % 13) + root : -1.0; });
      c->broadcast(b.data(), b.n, dt, root);
      EXPECT_EQ(check_all(b, 0, b.n, [&](size_t i) { return double(i % 13) + root; }, "broadcast"), 0);
    }
  }
  float x = 0;
  EXPECT_THROW(c->broadcast(&x, 1, DType::F32, c->size()), RuntimeError);
}

TEST(MpiComm, AllReduceHost) {
  auto c = make_mpi_communicator(MPI_COMM_WORLD);
  const int n = c->size();
  const double x = c->rank() + 1;
  EXPECT_EQ(c->all_reduce_host(x, RedOp::Sum), n * (n + 1) / 2.0);
  EXPECT_EQ(c->all_reduce_host(x, RedOp::Avg), (n + 1) / 2.0);
  EXPECT_EQ(c->all_reduce_host(x, RedOp::Max), double(n));
  EXPECT_EQ(c->all_reduce_host(x, RedOp::Min), 1.0);
}

TEST(MpiComm, SplitCommunicatorsWorkIndependently) {
  const int wr = world_rank(), wn = world_size();
  MPI_Comm half;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, wr % 2, wr, &half), MPI_SUCCESS);
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  auto sub = make_mpi_communicator(half);
  MPI_Comm_free(&half);  // the communicator holds its own duplicate
  int members = 0, rank_sum = 0;
  for (int q = wr % 2; q < wn; q += 2) {
    ++members;
    rank_sum += q;
  }
  EXPECT_EQ(sub->size(), members);
  EXPECT_EQ(sub->rank(), wr / 2);
  // Both in flight at once: each communicator's worker runs its own queue.
  std::vector<int64_t> a(5000, wr), b(5000, wr);
  auto ha = world->all_reduce_async(a.data(), a.size(), DType::I64, RedOp::Sum);
  auto hb = sub->all_reduce_async(b.data(), b.size(), DType::I64, RedOp::Sum);
  hb->wait();
  ha->wait();
  for (int64_t v : a) ASSERT_EQ(v, wn * (wn - 1) / 2);
  for (int64_t v : b) ASSERT_EQ(v, rank_sum);
  EXPECT_EQ(sub->all_reduce_host(1.0, RedOp::Sum), double(members));
}

TEST(MpiComm, CommSelf) {
  auto c = make_mpi_communicator(MPI_COMM_SELF);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->rank(), 0);
  Buf b(DType::BF16, 9);
  b.fill([](size_t i) { return double(i); });
  c->all_reduce(b.data(), b.n, DType::BF16, RedOp::Avg);
  EXPECT_EQ(check_all(b, 0, b.n, [](size_t i) { return double(i); }, "self avg"), 0);
}

TEST(MpiComm, ErrorMessageNamesRankFileAndCall) {
  try {
    mpi_fail(MPI_ERR_COUNT, "MPI_Allreduce(x)", "src/dist/some_file.cpp", 42);
    FAIL() << "mpi_fail returned";
  } catch (const RuntimeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("[rank " + std::to_string(world_rank()) + "]"), std::string::npos) << m;
    EXPECT_NE(m.find("some_file.cpp:42"), std::string::npos) << m;
    EXPECT_NE(m.find("MPI_Allreduce(x) failed"), std::string::npos) << m;
  }
}

// ---- staging through a fake device ------------------------------------------------------------------

// An Ops whose "device memory" is host memory stored XOR-encoded, so that only download/upload give
// meaningful bytes: a communicator that touched the buffer directly would produce garbage.
class FakeDeviceOps final : public Ops {
 public:
  static constexpr unsigned char kKey = 0xA5;
  std::string name() const override { return "fake-device"; }
  bool on_device() const override { return true; }
  DType act_dtype() const override { return DType::F32; }
  void* alloc(size_t bytes) override {
    void* p = std::malloc(bytes ? bytes : 1);
    std::memset(p, kKey, bytes);  // encoded zeros
    return p;
  }
  void free(void* p) override { std::free(p); }
  void zero(void* p, size_t bytes) override { std::memset(p, kKey, bytes); }
  void upload(void* dst, const void* src, size_t bytes) override {
    ++uploads;
    for (size_t i = 0; i < bytes; ++i) static_cast<unsigned char*>(dst)[i] = static_cast<const unsigned char*>(src)[i] ^ kKey;
  }
  void download(void* dst, const void* src, size_t bytes) override {
    ++downloads;
    for (size_t i = 0; i < bytes; ++i) static_cast<unsigned char*>(dst)[i] = static_cast<const unsigned char*>(src)[i] ^ kKey;
  }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void synchronize() override { ++syncs; }
  int uploads = 0, downloads = 0, syncs = 0;

  [[noreturn]] static void no() { throw RuntimeError("FakeDeviceOps: not a memory function"); }
  void convert(Ptr, Ptr, size_t) override { no(); }
  void encoder_forward(Ptr, const int*, Ptr, Ptr, int, int, int) override { no(); }
  void encoder_backward(float*, float*, Ptr, const int*, int, int, int) override { no(); }
  void layernorm_forward(Ptr, float*, float*, Ptr, Ptr, Ptr, int, int) override { no(); }
  void layernorm_backward(Ptr, float*, float*, Ptr, Ptr, Ptr, const float*, const float*, int, int) override { no(); }
  void matmul_forward(Ptr, Ptr, Ptr, Ptr, int, int, int) override { no(); }
  void matmul_backward(Ptr, float*, float*, Ptr, Ptr, Ptr, int, int, int) override { no(); }
  void gelu_forward(Ptr, Ptr, size_t) override { no(); }
  void gelu_backward(Ptr, Ptr, Ptr, size_t) override { no(); }
  void residual_forward(Ptr, Ptr, Ptr, size_t) override { no(); }
  void attention_forward(Ptr, float*, Ptr, int, int, int, int) override { no(); }
  void attention_backward(Ptr, Ptr, Ptr, Ptr, const float*, int, int, int, int) override { no(); }
  void crossentropy(float*, Ptr, const int*, int, int, int, float, bool) override { no(); }
  double sum(const float*, size_t) override { no(); }
  double sum_squares(const float*, size_t) override { no(); }
  void scale(float*, float, size_t) override { no(); }
  void adamw(float*, Ptr, float*, float*, const float*, size_t, const AdamWParams&) override { no(); }
};

// A host Buf mirrored into the device memory of `ops` (the fake device above, or a real GPU).
struct DevBuf {
  Ops& ops;
  Buf host;
  Buffer dev;
  DevBuf(Ops& o, DType dt, size_t n) : ops(o), host(dt, n), dev(o, n * dtype_size(dt)) {}
  void put() { ops.upload(dev.get(), host.data(), host.n * dtype_size(host.dt)); }
  const Buf& take() {
    ops.download(host.data(), dev.get(), host.n * dtype_size(host.dt));
    return host;
  }
};

// Every collective of a staged communicator `c` on device buffers of `ops`, against the closed forms:
// all_reduce of every dtype and op (`big` elements), uneven and even reduce_scatter and all_gather in
// fp32 and bf16, broadcast from a non-zero root, host scalars. Shared by the fake device and a real GPU.
void check_staged(Communicator& c, Ops& ops, size_t big) {
  const int n = c.size(), r = c.rank();
  EXPECT_EQ(c.name(), "mpi+staging");
  EXPECT_TRUE(c.device_buffers());
  EXPECT_EQ(c.rank(), world_rank());

  for (DType dt : kTypes)
    for (RedOp op : kOps) {
      DevBuf b(ops, dt, big);
      b.host.fill([&](size_t i) { return value(r, i); });
      b.put();
      c.all_reduce(b.dev.get(), b.host.n, dt, op);
      EXPECT_EQ(check_all(b.take(), 0, b.host.n, [&](size_t i) { return expected(op, dt, n, i); }, "staged all_reduce"), 0)
          << op_name(op) << " count " << big;
    }

  for (const auto& counts : {uneven_counts(n), even_split(5003, n)}) {
    const std::vector<size_t> off = segment_offsets(counts);
    auto owner = [&](size_t i) {
      size_t o = 0;
      while (off[o + 1] <= i) ++o;
      return double(o + i % 3);
    };
    for (DType dt : {DType::F32, DType::BF16}) {
      DevBuf b(ops, dt, off.back());
      b.host.fill([&](size_t i) { return value(r, i); });
      b.put();
      c.reduce_scatter(b.dev.get(), counts, dt, RedOp::Avg);
      EXPECT_EQ(check_all(b.take(), off[r], off[r + 1], [&](size_t i) { return expected(RedOp::Avg, dt, n, i); },
                          "staged reduce_scatter"),
                0);
      DevBuf g(ops, dt, off.back());
      g.host.fill([&](size_t i) { return i >= off[r] && i < off[r + 1] ? owner(i) : -7.0; });
      g.put();
      c.all_gather(g.dev.get(), counts, dt);
      EXPECT_EQ(check_all(g.take(), 0, g.host.n, owner, "staged all_gather"), 0);
    }
  }

  const int root = n - 1;
  for (DType dt : {DType::I64, DType::F32, DType::BF16}) {
    DevBuf b(ops, dt, 999);
    b.host.fill([&](size_t i) { return r == root ? double(i % 200) : 0.0; });
    b.put();
    c.broadcast(b.dev.get(), b.host.n, dt, root);
    EXPECT_EQ(check_all(b.take(), 0, b.host.n, [](size_t i) { return double(i % 200); }, "staged broadcast"), 0);
  }

  EXPECT_EQ(c.all_reduce_host(double(r), RedOp::Sum), n * (n - 1) / 2.0);
  c.barrier();
}

// Several async collectives in flight at once, waited for together, twice (the second round reuses the
// pooled host mirrors), and a handle dropped without wait().
void check_staged_in_flight(Communicator& c, Ops& ops) {
  const int n = c.size(), r = c.rank();
  std::vector<std::unique_ptr<DevBuf>> bufs;
  std::vector<CommHandle> hs;
  for (int round = 0; round < 2; ++round) {  // the second round reuses the pooled mirrors
    bufs.clear();
    hs.clear();
    for (size_t k = 0; k < 5; ++k) {
      bufs.push_back(std::make_unique<DevBuf>(ops, kTypes[k], 1000 * (k + 1) + round));
      bufs.back()->host.fill([&](size_t i) { return value(r, i); });
      bufs.back()->put();
      hs.push_back(c.all_reduce_async(bufs.back()->dev.get(), bufs.back()->host.n, kTypes[k], RedOp::Sum));
    }
    for (auto& h : hs) h->wait();
    for (auto& b : bufs)
      EXPECT_EQ(check_all(b->take(), 0, b->host.n, [&](size_t i) { return expected(RedOp::Sum, b->host.dt, n, i); },
                          "staged async"),
                0);
  }
  // A dropped handle still completes (and uploads) before its mirror is reused.
  DevBuf d(ops, DType::F32, 100);
  d.host.fill([&](size_t i) { return value(r, i); });
  d.put();
  c.all_reduce_async(d.dev.get(), d.host.n, DType::F32, RedOp::Max).reset();
  EXPECT_EQ(check_all(d.take(), 0, d.host.n, [&](size_t i) { return expected(RedOp::Max, DType::F32, n, i); },
                      "dropped handle"),
            0);
}

TEST(StagedComm, SameAnswersAsMpi) {
  FakeDeviceOps ops;
  auto c = make_staged_communicator(make_mpi_communicator(MPI_COMM_WORLD), ops);
  check_staged(*c, ops, 10007);
  EXPECT_GT(ops.syncs, 0);
}

TEST(StagedComm, SeveralInFlight) {
  FakeDeviceOps ops;
  auto c = make_staged_communicator(make_mpi_communicator(MPI_COMM_WORLD), ops);
  check_staged_in_flight(*c, ops);
}

// ---- staging through real GPU memory -------------------------------------------------------------
// Several ranks sharing one GPU (or each its own) with the communicator --comm mpi gives device ops:
// MPI staged through host memory. Skipped on every rank unless every rank sees a GPU.

bool every_rank_has_gpu() {
  int mine = cuda_device_count() > 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

TEST(StagedComm, RealDeviceBuffers) {
  if (!every_rank_has_gpu()) GTEST_SKIP() << "no CUDA GPU";
  auto ops = make_ops("cuda", world_rank());  // GPU world_rank % count: ranks share it when there are few
  auto c = make_communicator("mpi", ops.get());
  // 1000003 elements: past any single-message size, staged in one piece.
  check_staged(*c, *ops, 1000003);
  check_staged_in_flight(*c, *ops);
}

// The staged communicator must wait for the kernels queued on the ops' stream before it reads a
// buffer (Note [Staging] step 1), and its result must be in place for kernels queued after wait().
// A fake device cannot test this (it has no queue); a real stream can.
TEST(StagedComm, RealDeviceOrdersAgainstTheStream) {
  if (!every_rank_has_gpu()) GTEST_SKIP() << "no CUDA GPU";
  auto ops = make_ops("cuda", world_rank());
  auto c = make_communicator("mpi", ops.get());
  const int n = c->size(), r = c->rank();
  const size_t count = (size_t(1) << 22) + 3;
  // fp32: scale(2) queued and not waited for, then all_reduce, then scale(0.5) queued behind it.
  DevBuf b(*ops, DType::F32, count);
  b.host.fill([&](size_t i) { return value(r, i); });
  b.put();
  float* d = static_cast<float*>(b.dev.get());
  ops->scale(d, 2.0f, count);
  c->all_reduce(d, count, DType::F32, RedOp::Sum);
  ops->scale(d, 0.5f, count);
  EXPECT_EQ(check_all(b.take(), 0, count, [&](size_t i) { return expected(RedOp::Sum, DType::F32, n, i); },
                      "all_reduce after / before queued kernels"),
            0);
  // bf16: the buffer is written by a queued convert() right before the collective.
  DevBuf src(*ops, DType::F32, count);
  src.host.fill([&](size_t i) { return value(r, i); });
  src.put();
  DevBuf dst(*ops, DType::BF16, count);
  ops->convert(Ptr(dst.dev.get(), DType::BF16), Ptr(src.dev.get(), DType::F32), count);
  c->all_reduce(dst.dev.get(), count, DType::BF16, RedOp::Avg);
  EXPECT_EQ(check_all(dst.take(), 0, count, [&](size_t i) { return expected(RedOp::Avg, DType::BF16, n, i); },
                      "bf16 all_reduce of a queued convert"),
            0);
  // reduce_scatter and all_gather behind a queued kernel, with uneven counts.
  const auto counts = uneven_counts(n);
  const std::vector<size_t> off = segment_offsets(counts);
  DevBuf rs(*ops, DType::F32, off.back());
  rs.host.fill([&](size_t i) { return value(r, i); });
  rs.put();
  ops->scale(static_cast<float*>(rs.dev.get()), 2.0f, off.back());
  c->reduce_scatter(rs.dev.get(), counts, DType::F32, RedOp::Sum);
  EXPECT_EQ(check_all(rs.take(), off[r], off[r + 1], [&](size_t i) { return 2 * expected(RedOp::Sum, DType::F32, n, i); },
                      "reduce_scatter behind a queued kernel"),
            0);
  DevBuf ag(*ops, DType::F32, off.back());
  ag.host.fill([&](size_t i) { return i >= off[r] && i < off[r + 1] ? double(r + 1) : -1.0; });
  ag.put();
  ops->scale(static_cast<float*>(ag.dev.get()), 4.0f, off.back());
  c->all_gather(ag.dev.get(), counts, DType::F32);
  auto owner4 = [&](size_t i) {
    size_t o = 0;
    while (off[o + 1] <= i) ++o;
    return 4.0 * double(o + 1);
  };
  EXPECT_EQ(check_all(ag.take(), 0, off.back(), owner4, "all_gather behind a queued kernel"), 0);
}

// What a user gets on one GPU with more ranks than GPUs: --comm auto and --comm mpi both stage.
TEST(StagedComm, FactoryStagesWhenRanksShareAGpu) {
  if (!every_rank_has_gpu()) GTEST_SKIP() << "no CUDA GPU";
  auto ops = make_ops("cuda", world_rank());
  auto m = make_communicator("mpi", ops.get());
  EXPECT_EQ(m->name(), "mpi+staging");
  EXPECT_TRUE(m->device_buffers());
  if (m->local_size() > cuda_device_count()) {
    auto a = make_communicator("auto", ops.get());
    EXPECT_EQ(a->name(), "mpi+staging");
    EXPECT_THROW(make_communicator("nccl", ops.get()), UsageError);
  }
}

// ---- the factory under mpirun ---------------------------------------------------------------------

TEST(Factory, PicksMpiUnderMpirun) {
  const int n = world_size();
  auto c = make_communicator("auto", nullptr);
  EXPECT_EQ(c->name(), n > 1 ? "mpi" : "single");
  EXPECT_EQ(c->size(), n);
  auto m = make_communicator("mpi", nullptr);
  EXPECT_EQ(m->name(), "mpi");
  FakeDeviceOps ops;
  auto s = make_communicator("mpi", &ops);
  EXPECT_EQ(s->name(), "mpi+staging");
  EXPECT_TRUE(s->device_buffers());
  auto a = make_communicator("auto", &ops);  // no NCCL for a fake device: staged mpi (or single on one rank)
  EXPECT_TRUE(a->device_buffers());
  if (n > 1) {
    EXPECT_THROW(make_communicator("single", nullptr), UsageError);
  }
  if (cuda_device_count() == 0) {
    EXPECT_THROW(make_communicator("nccl", &ops), UsageError);
  }
  EXPECT_THROW(make_communicator("tcp", nullptr), UsageError);
}

}  // namespace
