// The staged communicator: device buffers (ops.on_device()) reduced by a host-buffer communicator
// (mpi) through host mirrors, copied with ops.download/upload. Several ranks sharing one GPU use it.
// Invariant: `ops` outlives the communicator and every handle; only the Ops and Communicator
// interfaces are used here, so this file builds without MPI and without CUDA.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "core/errors.h"
#include "dist/backends.h"
#include "dist/comm.h"
#include "ops/ops.h"

namespace mc {
namespace {

// Note [Staging]
// An async collective on device buffer d:
//   1. ops.synchronize(), so the kernels that produced d have finished;
//   2. ops.download(mirror, d) of the part the collective reads (all of it for all_reduce and
//      reduce_scatter, the own segment for all_gather, the root's buffer for broadcast);
//   3. the inner communicator's async collective on the mirror (its worker thread overlaps it with
//      whatever the caller launches next);
// and wait() waits for the inner handle, then ops.upload(d, mirror) of the part that changed (the own
// segment for reduce_scatter, nothing on the broadcast root). Each in-flight collective has its own
// mirror, taken from a pool that grows to the largest number in flight at once and is reused after.
// A handle dropped without wait() still completes (its destructor waits and uploads), as an mpi handle
// would, so the mirror is never freed under the inner communicator's worker.

struct Mirror {
  std::unique_ptr<char[]> data;
  size_t capacity = 0;
};

class MirrorPool {
 public:
  std::unique_ptr<Mirror> acquire(size_t bytes) {
    std::unique_ptr<Mirror> m;
    {
      std::lock_guard<std::mutex> lk(mu_);
      // Best fit among the free mirrors large enough; otherwise grow the largest one.
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if ((*it)->capacity >= bytes && (best == free_.end() || (*it)->capacity < (*best)->capacity)) best = it;
      if (best == free_.end() && !free_.empty())
        best = std::max_element(free_.begin(), free_.end(),
                                [](const auto& a, const auto& b) { return a->capacity < b->capacity; });
      if (best != free_.end()) {
        m = std::move(*best);
        free_.erase(best);
      }
    }
    if (!m) m = std::make_unique<Mirror>();
    if (m->capacity < bytes) {
      m->data.reset(new char[bytes]);
      m->capacity = bytes;
    }
    return m;
  }
  void release(std::unique_ptr<Mirror> m) {
    std::lock_guard<std::mutex> lk(mu_);
    free_.push_back(std::move(m));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Mirror>> free_;
};

class StagedWork final : public CommWork {
 public:
  StagedWork(std::shared_ptr<MirrorPool> pool, std::unique_ptr<Mirror> mirror, CommHandle inner, Ops& ops, void* dev,
             size_t up_off, size_t up_bytes)
      : pool_(std::move(pool)), mirror_(std::move(mirror)), inner_(std::move(inner)), ops_(ops), dev_(dev),
        up_off_(up_off), up_bytes_(up_bytes) {}
  ~StagedWork() override {
    try {
      finish();
    } catch (...) {  // a dropped handle has nobody to report to; the next collective fails instead
    }
  }
  void wait() override { finish(); }

 private:
  void finish() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!mirror_) {
      if (err_) std::rethrow_exception(err_);
      return;
    }
    try {
      inner_->wait();
      if (up_bytes_ > 0) ops_.upload(static_cast<char*>(dev_) + up_off_, mirror_->data.get() + up_off_, up_bytes_);
    } catch (...) {
      err_ = std::current_exception();
    }
    inner_.reset();
    pool_->release(std::move(mirror_));
    if (err_) std::rethrow_exception(err_);
  }

  std::mutex mu_;
  std::shared_ptr<MirrorPool> pool_;
  std::unique_ptr<Mirror> mirror_;  // null once finished
  CommHandle inner_;
  Ops& ops_;
  void* dev_;
  size_t up_off_, up_bytes_;
  std::exception_ptr err_;
};

class StagedCommunicator final : public Communicator, public HostScalarReducer {
 public:
  StagedCommunicator(std::unique_ptr<Communicator> inner, Ops& ops)
      : inner_(std::move(inner)), ops_(ops), pool_(std::make_shared<MirrorPool>()) {
    MC_CHECK(inner_ && !inner_->device_buffers(), "staging needs a host-buffer communicator");
  }

  std::string name() const override { return inner_->name() + "+staging"; }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int local_rank() const override { return inner_->local_rank(); }
  int local_size() const override { return inner_->local_size(); }
  bool device_buffers() const override { return true; }

  // Note [Staging] for the parts each collective downloads and uploads.
  CommHandle all_reduce_async(void* buf, size_t count, DType dt, RedOp op) override {
    const size_t bytes = count * dtype_size(dt);
    auto m = stage_in(buf, bytes, 0, bytes);
    char* h = m->data.get();
    return finish(std::move(m), inner_->all_reduce_async(h, count, dt, op), buf, 0, bytes);
  }

  CommHandle reduce_scatter_async(void* buf, const std::vector<size_t>& counts, DType dt, RedOp op) override {
    MC_CHECK(counts.size() == size_t(size()), "reduce_scatter: %zu counts for %d ranks", counts.size(), size());
    const size_t esz = dtype_size(dt);
    const std::vector<size_t> off = segment_offsets(counts);
    const size_t r = size_t(rank());
    auto m = stage_in(buf, off.back() * esz, 0, off.back() * esz);
    char* h = m->data.get();
    return finish(std::move(m), inner_->reduce_scatter_async(h, counts, dt, op), buf, off[r] * esz, counts[r] * esz);
  }

  CommHandle all_gather_async(void* buf, const std::vector<size_t>& counts, DType dt) override {
    MC_CHECK(counts.size() == size_t(size()), "all_gather: %zu counts for %d ranks", counts.size(), size());
    const size_t esz = dtype_size(dt);
    const std::vector<size_t> off = segment_offsets(counts);
    const size_t r = size_t(rank());
    auto m = stage_in(buf, off.back() * esz, off[r] * esz, counts[r] * esz);
    char* h = m->data.get();
    return finish(std::move(m), inner_->all_gather_async(h, counts, dt), buf, 0, off.back() * esz);
  }

  CommHandle broadcast_async(void* buf, size_t count, DType dt, int root) override {
    const size_t bytes = count * dtype_size(dt);
    const bool is_root = root == rank();
    auto m = stage_in(buf, bytes, 0, is_root ? bytes : 0);
    char* h = m->data.get();
    return finish(std::move(m), inner_->broadcast_async(h, count, dt, root), buf, 0, is_root ? 0 : bytes);
  }

  void barrier() override { inner_->barrier(); }
  [[noreturn]] void abort(int code) override {
    inner_->abort(code);
    std::_Exit(code);  // not reached: the inner abort does not return
  }
  double reduce_host_scalar(double x, RedOp op) override { return inner_->all_reduce_host(x, op); }

 private:
  // Steps 1 and 2 of Note [Staging]: a mirror of `bytes`, holding [off, off+n) of the device buffer.
  std::unique_ptr<Mirror> stage_in(const void* dev, size_t bytes, size_t off, size_t n) {
    auto m = pool_->acquire(bytes);
    if (n > 0) {
      ops_.synchronize();
      ops_.download(m->data.get() + off, static_cast<const char*>(dev) + off, n);
    }
    return m;
  }
  CommHandle finish(std::unique_ptr<Mirror> m, CommHandle inner, void* dev, size_t up_off, size_t up_bytes) {
    return std::make_shared<StagedWork>(pool_, std::move(m), std::move(inner), ops_, dev, up_off, up_bytes);
  }

  std::unique_ptr<Communicator> inner_;
  Ops& ops_;
  std::shared_ptr<MirrorPool> pool_;
};

}  // namespace

std::unique_ptr<Communicator> make_staged_communicator(std::unique_ptr<Communicator> inner, Ops& ops) {
  return std::make_unique<StagedCommunicator>(std::move(inner), ops);
}

}  // namespace mc
