// The MPI communicator: host buffers, one worker thread per communicator that makes every MPI call
// (so async collectives overlap with the caller's compute), bf16 through a user datatype and user ops.
// Invariant: MPI is initialised with MPI_THREAD_MULTIPLE (or SERIALIZED, see Note [Thread level])
// before construction, and the communicator is destroyed before MPI_Finalize.
#include "dist/comm_mpi.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "dist/backends.h"

namespace mc {

void mpi_fail(int code, const char* call, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) len = std::snprintf(msg, sizeof(msg), "MPI error %d", code);
  std::string w = where(file, line);
  if (error_rank() < 0) {  // where() names the rank only once dist_init has set it
    int init = 0, fin = 0, r = -1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    w = strfmt("[rank %d] ", r) + w;
  }
  throw RuntimeError(w + ": " + call + " failed: " + std::string(msg, size_t(std::max(len, 0))));
}

namespace {

// Note [Worker thread]
// Open MPI's non-blocking collectives (MPI_Iallreduce, ...) only progress while some thread is inside
// the MPI library, so "issue now, wait later" from a single thread does not overlap communication with
// the backward pass: the reduction would mostly happen inside MPI_Wait. Instead every communicator owns
// one worker thread that makes ALL of its MPI calls with the blocking collectives, taking jobs from a
// FIFO queue. An async call enqueues a job and returns its handle; wait() blocks on that job's
// completion. Since one thread runs the jobs in issue order, handles complete in issue order and the
// collectives of a communicator are issued in the same order on every rank (the matching rule). Sync
// calls (barrier, the sync forms) go through the same queue, so they are ordered after pending jobs.
// If a job fails, the communicator is "broken": later jobs fail at once with the first error instead of
// entering a collective their peers may never match.

// Note [Thread level]
// The worker makes MPI calls while the main thread (or another communicator's worker) may make its
// own, which needs MPI_THREAD_MULTIPLE. dist_init accepts MPI_THREAD_SERIALIZED too; then every job
// holds a process-wide lock for its duration, which is correct as long as only one communicator has
// collectives in flight at a time (two communicators blocking in collectives that wait on each other
// across ranks would deadlock). Open MPI 4.1 provides MULTIPLE.
std::mutex& serialized_mpi_lock() {
  static std::mutex m;
  return m;
}

// Note [Large counts]
// MPI counts are int. all_reduce and broadcast split buffers longer than INT_MAX elements into
// chunks of at most max_chunk elements, one MPI call each (element-wise ops, so chunks are
// independent). reduce_scatter/all_gather take int counts and int displacements, so their total
// must fit in an int: they throw RuntimeError otherwise (1.5B-parameter fp32 gradients still fit).

// bf16 as an opaque 2-byte MPI datatype, reduced by user ops that compute in float and round to
// nearest even (the same rounding as f32_to_bf16 everywhere else).
template <typename F>
void bf16_apply(void* in, void* inout, int* len, F f) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(f(bf16_to_f32(a[i]), bf16_to_f32(b[i])));
}
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  bf16_apply(in, inout, len, [](float x, float y) { return x + y; });
}
void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  bf16_apply(in, inout, len, [](float x, float y) { return std::max(x, y); });
}
void bf16_min(void* in, void* inout, int* len, MPI_Datatype*) {
  bf16_apply(in, inout, len, [](float x, float y) { return std::min(x, y); });
}

// buf[0..n) /= world (Avg = Sum then divide; integer division for ints, float division for bf16).
void divide(void* buf, size_t n, DType dt, int world) {
  switch (dt) {
    case DType::F32: {
      float* x = static_cast<float*>(buf);
      for (size_t i = 0; i < n; ++i) x[i] /= float(world);
      break;
    }
    case DType::F64: {
      double* x = static_cast<double*>(buf);
      for (size_t i = 0; i < n; ++i) x[i] /= double(world);
      break;
    }
    case DType::I32: {
      int32_t* x = static_cast<int32_t*>(buf);
      for (size_t i = 0; i < n; ++i) x[i] /= int32_t(world);
      break;
    }
    case DType::I64: {
      int64_t* x = static_cast<int64_t*>(buf);
      for (size_t i = 0; i < n; ++i) x[i] /= int64_t(world);
      break;
    }
    case DType::BF16: {
      uint16_t* x = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < n; ++i) x[i] = f32_to_bf16(bf16_to_f32(x[i]) / float(world));
      break;
    }
  }
}

// One queued collective. The worker runs fn, then marks it done; wait() blocks until then.
class Job final : public CommWork {
 public:
  explicit Job(std::function<void()> fn) : fn_(std::move(fn)) {}
  void run() {
    try {
      fn_();
    } catch (...) {
      err_ = std::current_exception();
    }
    fn_ = nullptr;
    finish();
  }
  void fail(std::exception_ptr e) {
    err_ = std::move(e);
    fn_ = nullptr;
    finish();
  }
  void wait() override {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    if (err_) std::rethrow_exception(err_);
  }
  std::exception_ptr error() const { return err_; }

 private:
  void finish() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
  }
  std::function<void()> fn_;
  std::exception_ptr err_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm parent, size_t max_chunk) : max_chunk_(std::max<size_t>(1, std::min<size_t>(max_chunk, INT_MAX))) {
    int init = 0;
    MPI_Initialized(&init);
    MC_CHECK(init, "MPI communicator created before MPI_Init (call dist_init first)");
    MC_MPI_CHECK(MPI_Comm_dup(parent, &comm_));
    MC_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MC_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MC_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    MPI_Comm node;
    MC_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    MC_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
    MC_MPI_CHECK(MPI_Comm_size(node, &local_size_));
    MC_MPI_CHECK(MPI_Comm_free(&node));
    MC_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type_));
    MC_MPI_CHECK(MPI_Type_commit(&bf16_type_));
    MC_MPI_CHECK(MPI_Op_create(&bf16_sum, 1, &bf16_ops_[0]));
    MC_MPI_CHECK(MPI_Op_create(&bf16_max, 1, &bf16_ops_[1]));
    MC_MPI_CHECK(MPI_Op_create(&bf16_min, 1, &bf16_ops_[2]));
    int level = MPI_THREAD_SINGLE;
    MC_MPI_CHECK(MPI_Query_thread(&level));
    serialize_ = level < MPI_THREAD_MULTIPLE;  // Note [Thread level]
    worker_ = std::thread([this] { worker_loop(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();  // runs the queued jobs first: a caller may have dropped a handle without wait()
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;  // too late to free anything; MPI_Finalize released it
    for (MPI_Op& op : bf16_ops_) MPI_Op_free(&op);
    MPI_Type_free(&bf16_type_);
    MPI_Comm_free(&comm_);
  }

  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  bool device_buffers() const override { return false; }

  CommHandle all_reduce_async(void* buf, size_t count, DType dt, RedOp op) override {
    return submit([=] {
      // Note [Large counts]
      const size_t esz = dtype_size(dt);
      for (size_t done = 0; done < count; done += max_chunk_) {
        const size_t n = std::min(max_chunk_, count - done);
        void* p = static_cast<char*>(buf) + done * esz;
        MC_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, int(n), type(dt), mpi_op(dt, op), comm_));
        if (op == RedOp::Avg) divide(p, n, dt, size_);
      }
    });
  }

  CommHandle reduce_scatter_async(void* buf, const std::vector<size_t>& counts, DType dt, RedOp op) override {
    const std::vector<int> icounts = int_counts(counts, "reduce_scatter");
    const std::vector<size_t> off = segment_offsets(counts);
    return submit([=] {
      const size_t esz = dtype_size(dt);
      char* base = static_cast<char*>(buf);
      // In place, MPI leaves this rank's reduced segment at the START of buf; the contract wants it at
      // its own offset.
      MC_MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, base, icounts.data(), type(dt), mpi_op(dt, op), comm_));
      char* mine = base + off[size_t(rank_)] * esz;
      const size_t n = counts[size_t(rank_)];
      if (mine != base && n > 0) std::memmove(mine, base, n * esz);
      if (op == RedOp::Avg) divide(mine, n, dt, size_);
    });
  }

  CommHandle all_gather_async(void* buf, const std::vector<size_t>& counts, DType dt) override {
    const std::vector<int> icounts = int_counts(counts, "all_gather");
    std::vector<int> displs(counts.size());
    for (size_t r = 1; r < counts.size(); ++r) displs[r] = displs[r - 1] + icounts[r - 1];
    return submit([=] {
      MC_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, icounts.data(), displs.data(), type(dt),
                                  comm_));
    });
  }

  CommHandle broadcast_async(void* buf, size_t count, DType dt, int root) override {
    MC_CHECK(root >= 0 && root < size_, "broadcast root %d outside [0, %d)", root, size_);
    return submit([=] {
      const size_t esz = dtype_size(dt);
      for (size_t done = 0; done < count; done += max_chunk_) {  // Note [Large counts]
        const size_t n = std::min(max_chunk_, count - done);
        MC_MPI_CHECK(MPI_Bcast(static_cast<char*>(buf) + done * esz, int(n), type(dt), root, comm_));
      }
    });
  }

  void barrier() override {
    submit([=] { MC_MPI_CHECK(MPI_Barrier(comm_)); })->wait();
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(comm_, code);  // thread-safe under MPI_THREAD_MULTIPLE, even with the worker blocked
    std::_Exit(code);
  }

 private:
  CommHandle submit(std::function<void()> fn) {
    auto job = std::make_shared<Job>(std::move(fn));
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return job;
  }

  // Note [Worker thread]
  void worker_loop() {
    std::exception_ptr broken;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      if (broken) {
        job->fail(broken);
        continue;
      }
      if (serialize_) {
        std::lock_guard<std::mutex> g(serialized_mpi_lock());  // Note [Thread level]
        job->run();
      } else {
        job->run();
      }
      if (job->error()) broken = job->error();
    }
  }

  std::vector<int> int_counts(const std::vector<size_t>& counts, const char* what) const {
    MC_CHECK(counts.size() == size_t(size_), "%s: %zu counts for %d ranks", what, counts.size(), size_);
    std::vector<int> ic(counts.size());
    size_t total = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      total += counts[r];
      if (total > size_t(INT_MAX))  // Note [Large counts]
        throw RuntimeError(where(__FILE__, __LINE__) +
                           strfmt(": %s over MPI: %zu elements in all exceeds INT_MAX", what, segment_offsets(counts).back()));
      ic[r] = int(counts[r]);
    }
    return ic;
  }

  MPI_Datatype type(DType dt) const {
    switch (dt) {
      case DType::F32: return MPI_FLOAT;
      case DType::F64: return MPI_DOUBLE;
      case DType::I32: return MPI_INT32_T;
      case DType::I64: return MPI_INT64_T;
      case DType::BF16: return bf16_type_;
    }
    throw RuntimeError("mpi: unknown dtype");
  }

  MPI_Op mpi_op(DType dt, RedOp op) const {
    const int k = (op == RedOp::Sum || op == RedOp::Avg) ? 0 : op == RedOp::Max ? 1 : 2;
    if (dt == DType::BF16) return bf16_ops_[k];
    static const MPI_Op builtin[3] = {MPI_SUM, MPI_MAX, MPI_MIN};
    return builtin[k];
  }

  const size_t max_chunk_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Datatype bf16_type_ = MPI_DATATYPE_NULL;
  MPI_Op bf16_ops_[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};  // sum, max, min
  bool serialize_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, size_t max_chunk_elems) {
  return std::make_unique<MpiCommunicator>(comm, max_chunk_elems);
}

std::unique_ptr<Communicator> make_mpi_world_communicator() { return make_mpi_communicator(MPI_COMM_WORLD); }

}  // namespace mc
