// Bucketed gradient reduction overlapped with backward (DDP) and its ZeRO-1 reduce-scatter variant.
#include "dist/grad_sync.h"

#include <algorithm>
#include <chrono>

#include "core/errors.h"

namespace mc {

std::vector<Bucket> make_bucket_plan(size_t n, size_t bucket_elems) {
  MC_CHECK(bucket_elems > 0, "bucket size must be positive");
  std::vector<Bucket> plan;
  size_t end = n;
  while (end > 0) {
    const size_t begin = end > bucket_elems ? end - bucket_elems : 0;
    plan.push_back({begin, end});
    end = begin;
  }
  return plan;
}

size_t bucket_elems_for_mb(double mb) { return std::max<size_t>(1, size_t(mb * 1024 * 1024 / sizeof(float))); }

GradSync::GradSync(Communicator& comm, float* grads, size_t n, size_t bucket_elems, bool zero)
    : comm_(comm), grads_(grads), n_(n), zero_(zero), plan_(make_bucket_plan(n, bucket_elems)) {
  shard_off_ = segment_offsets(even_split(n, comm.size()));
  shard_begin_ = zero ? shard_off_[comm.rank()] : 0;
  shard_end_ = zero ? shard_off_[comm.rank() + 1] : n;
}

void GradSync::begin() {
  MC_CHECK(pending_.empty() && next_ == 0, "GradSync::begin() while a reduction is in flight");
}

// Note [Bucket overlap]
// Backward produces gradients from the end of the flat buffer towards the start, and tells us how
// far it got (on_ready). A bucket whose whole range is final is handed to the communicator at once;
// its reduction then runs (MPI worker thread, or NCCL's own stream) while backward goes on computing
// earlier layers. Buckets are launched strictly in plan order, which is identical on every rank
// because it depends only on (n, bucket size): collectives match without any negotiation. Only what
// is still in flight when backward ends is "exposed": finish() measures exactly that wait. Small
// buckets start earlier but pay per-call latency; --bucket-mb trades the two.
void GradSync::on_ready(size_t ready_from) {
  while (next_ < plan_.size() && plan_[next_].begin >= ready_from) launch(plan_[next_++]);
}

void GradSync::launch(const Bucket& b) {
  float* p = grads_ + b.begin;
  if (!zero_) {
    pending_.push_back(comm_.all_reduce_async(p, b.end - b.begin, DType::F32, RedOp::Avg));
    return;
  }
  // ZeRO-1: within this bucket, rank r receives the part that overlaps its shard.
  std::vector<size_t> counts(comm_.size());
  for (int r = 0; r < comm_.size(); ++r) {
    const size_t lo = std::max(b.begin, shard_off_[r]), hi = std::min(b.end, shard_off_[r + 1]);
    counts[r] = hi > lo ? hi - lo : 0;
  }
  pending_.push_back(comm_.reduce_scatter_async(p, counts, DType::F32, RedOp::Avg));
}

double GradSync::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  on_ready(0);  // buckets not launched during backward (e.g. overlap off) are fully exposed
  for (auto& h : pending_) h->wait();
  pending_.clear();
  next_ = 0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace mc
