// Backend-independent pieces of the Communicator: all_reduce_host, and the single-rank backend
// (rank 0 of 1: every collective is the identity and returns a completed handle).
// Invariant: the single backend never reads or writes a buffer, so it serves host and device ops alike.
#include <cstdio>
#include <cstdlib>

#include "core/errors.h"
#include "dist/backends.h"
#include "dist/comm.h"

namespace mc {

// Host scalars: a host-buffer communicator reduces the value directly; one whose buffers live on a
// device reduces it through its host side (HostScalarReducer, backends.h).
double Communicator::all_reduce_host(double x, RedOp op) {
  if (device_buffers()) {
    auto* h = dynamic_cast<HostScalarReducer*>(this);
    MC_CHECK(h != nullptr, "communicator %s has device buffers but no host reduction", name().c_str());
    return h->reduce_host_scalar(x, op);
  }
  all_reduce(&x, 1, DType::F64, op);
  return x;
}

namespace {

class DoneWork final : public CommWork {
 public:
  void wait() override {}
};

class SingleCommunicator final : public Communicator, public HostScalarReducer {
 public:
  explicit SingleCommunicator(bool device_buffers) : device_buffers_(device_buffers) {}
  std::string name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  bool device_buffers() const override { return device_buffers_; }

  // Op over one rank is the value itself (Avg divides by 1).
  CommHandle all_reduce_async(void*, size_t, DType, RedOp) override { return done(); }
  CommHandle reduce_scatter_async(void*, const std::vector<size_t>& counts, DType, RedOp) override {
    MC_CHECK(counts.size() == 1, "reduce_scatter: %zu counts for 1 rank", counts.size());
    return done();
  }
  CommHandle all_gather_async(void*, const std::vector<size_t>& counts, DType) override {
    MC_CHECK(counts.size() == 1, "all_gather: %zu counts for 1 rank", counts.size());
    return done();
  }
  CommHandle broadcast_async(void*, size_t, DType, int root) override {
    MC_CHECK(root == 0, "broadcast root %d with 1 rank", root);
    return done();
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(code);
  }
  double reduce_host_scalar(double x, RedOp) override { return x; }

 private:
  static CommHandle done() {
    static const CommHandle h = std::make_shared<DoneWork>();
    return h;
  }
  bool device_buffers_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator(bool device_buffers) {
  return std::make_unique<SingleCommunicator>(device_buffers);
}

std::unique_ptr<Communicator> make_single_communicator() { return make_single_communicator(false); }

}  // namespace mc
