// Agreeing on failure across ranks (Note [Agreed failure] in agree.h).
#include "dist/agree.h"

#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/errors.h"

namespace mc {

int exit_code_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const AgreedExit& a) {
    return a.code;
  } catch (const UsageError&) {
    return 2;
  } catch (...) {
    return 1;
  }
}

namespace {
// The one-line message of e, "[rank r] " added when r > 0 (and not there already).
std::string failure_message(std::exception_ptr e, int rank) {
  std::string msg;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    msg = x.what();
  } catch (...) {
    msg = "unknown error";
  }
  const std::string tag = strfmt("[rank %d] ", rank);
  if (rank > 0 && msg.compare(0, tag.size(), tag) != 0) msg = tag + msg;
  return msg;
}
}  // namespace

void print_failure(std::exception_ptr e, int rank) {
  std::fprintf(stderr, "minicolossus: %s\n", failure_message(e, rank).c_str());
  std::fflush(stderr);
}

namespace {
// The lowest rank whose `local` holds a failure, and that failure's exit code (two host all-reduces);
// -1 when no rank failed. Collective; comm.size() > 1.
int lowest_failure(Communicator& comm, std::exception_ptr local, int* code) {
  const double none = std::numeric_limits<double>::infinity();
  const double first = comm.all_reduce_host(local ? double(comm.rank()) : none, RedOp::Min);
  if (first == none) return -1;
  const bool me = double(comm.rank()) == first;
  *code = int(comm.all_reduce_host(me ? double(exit_code_of(local)) : 0.0, RedOp::Max));
  return int(first);
}
}  // namespace

void agree_and_rethrow(Communicator& comm, std::exception_ptr local) {
  if (comm.size() == 1) {
    if (local) std::rethrow_exception(local);
    return;
  }
  int code = 0;
  const int root = lowest_failure(comm, local, &code);
  if (root < 0) return;
  const bool me = comm.rank() == root;
  const std::string mine = me ? failure_message(local, root) : std::string();
  const size_t len = size_t(comm.all_reduce_host(me ? double(mine.size()) : 0.0, RedOp::Max));
  std::vector<int32_t> buf((len + 3) / 4 + 1, 0);
  if (me) std::memcpy(buf.data(), mine.data(), mine.size());
  comm.broadcast(buf.data(), buf.size(), DType::I32, root);
  const std::string msg(reinterpret_cast<const char*>(buf.data()), len);
  if (code == 2) throw UsageError(msg);
  throw RuntimeError(msg);
}

void agree_on_failure(Communicator& comm, std::exception_ptr local) {
  if (comm.size() == 1) {
    if (!local) return;
    print_failure(local, 0);
    throw AgreedExit(exit_code_of(local));
  }
  int code = 0;
  const int root = lowest_failure(comm, local, &code);
  if (root < 0) return;
  if (comm.rank() == root) print_failure(local, root);
  throw AgreedExit(code);
}

bool all_ranks_equal(Communicator& comm, const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  bool same = true;
  for (const double half : {double(h >> 32), double(h & 0xffffffffu)})  // each exact in a double
    same = comm.all_reduce_host(half, RedOp::Min) == comm.all_reduce_host(half, RedOp::Max) && same;
  return same;
}

void run_agreed(Communicator& comm, const std::function<void()>& step) {
  std::exception_ptr err;
  try {
    step();
  } catch (...) {
    err = std::current_exception();
  }
  agree_on_failure(comm, err);
}

}  // namespace mc
