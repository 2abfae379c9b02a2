// Gradient synchronisation, DDP style: the flat fp32 gradient buffer is cut into buckets (byte
// ranges), each reduced asynchronously as soon as backward has finished all of its gradients, in
// the same fixed order on every rank. Plain data parallelism all-reduces (average) each bucket;
// ZeRO-1 reduce-scatters it so each rank ends with the averaged gradients of its own shard only.
// Invariant: a step calls begin(), then on_ready() with non-increasing offsets (backward order),
// then finish() before anyone reads the gradients. Buffers are ops buffers (see comm.h).
#pragma once
#include <cstddef>
#include <vector>

#include "dist/comm.h"

namespace mc {

struct Bucket {
  size_t begin = 0, end = 0;  // element range [begin, end) of the gradient buffer
};

// Buckets of about bucket_elems elements covering [0, n) exactly once, listed from the END of the
// buffer towards the start (the order gradients become ready, Note [Gradient readiness] in gpt2.cpp).
std::vector<Bucket> make_bucket_plan(size_t n, size_t bucket_elems);
// fp32 gradient elements in a bucket of `mb` MiB (--bucket-mb), at least 1.
size_t bucket_elems_for_mb(double mb);

class GradSync {
 public:
  // grads: n fp32 elements. zero: reduce-scatter to the shards given by even_split(n, world).
  GradSync(Communicator& comm, float* grads, size_t n, size_t bucket_elems, bool zero);
  const std::vector<Bucket>& plan() const { return plan_; }
  // The element range this rank owns under ZeRO (the whole buffer otherwise).
  size_t shard_begin() const { return shard_begin_; }
  size_t shard_end() const { return shard_end_; }

  void begin();
  // Gradients at offsets >= ready_from are final: launch every bucket lying entirely inside.
  void on_ready(size_t ready_from);
  // Launches what is left, waits for all; returns the seconds spent waiting (exposed communication).
  double finish();

 private:
  void launch(const Bucket& b);
  Communicator& comm_;
  float* grads_;
  size_t n_;
  bool zero_;
  std::vector<Bucket> plan_;
  std::vector<size_t> shard_off_;  // world+1 offsets of the ZeRO shards
  size_t shard_begin_ = 0, shard_end_ = 0;
  size_t next_ = 0;  // next bucket of plan_ to launch
  std::vector<CommHandle> pending_;
};

}  // namespace mc
