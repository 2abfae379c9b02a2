// Agreement on failure (Note [Agreed failure] in src/dist/agree.h), on every rank of the job: an error
// on any subset of ranks ends every rank with the lowest failing rank's exit code, printed once; no
// error returns normally; and the ranks stay in step afterwards (a collective still matches).
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/errors.h"
#include "dist/agree.h"
#include "dist/comm.h"

namespace mc {
namespace {

// Runs run_agreed with a step that throws `what` on the ranks in `failing` (by rank id); returns the
// exit code every rank got (0 when nobody failed) and checks that a collective still matches.
int agreed_code(Communicator& c, const std::vector<int>& failing, bool usage) {
  int code = 0;
  try {
    run_agreed(c, [&] {
      for (int r : failing)
        if (r == c.rank()) {
          if (usage) throw UsageError("bad input on this rank");
          throw std::runtime_error("a runtime failure on this rank");
        }
    });
  } catch (const AgreedExit& e) {
    code = e.code;
  }
  EXPECT_EQ(c.all_reduce_host(1.0, RedOp::Sum), double(c.size())) << "ranks out of step after the agreement";
  return code;
}

TEST(Agree, NobodyFails) {
  auto c = make_world_communicator();
  EXPECT_EQ(agreed_code(*c, {}, true), 0);
}

TEST(Agree, OneRankFailsEveryRankExits) {
  auto c = make_world_communicator();
  const int last = c->size() - 1;
  EXPECT_EQ(agreed_code(*c, {last}, true), 2) << "a UsageError on rank " << last << " only";
  EXPECT_EQ(agreed_code(*c, {last}, false), 1) << "a runtime error on rank " << last << " only";
}

TEST(Agree, LowestFailingRankDecidesTheCode) {
  auto c = make_world_communicator();
  if (c->size() < 2) GTEST_SKIP() << "needs two ranks";
  // rank 0 fails with a runtime error, rank 1 with bad input: rank 0's code (1) wins.
  int code = 0;
  try {
    run_agreed(*c, [&] {
      if (c->rank() == 0) throw std::runtime_error("runtime");
      if (c->rank() == 1) throw UsageError("usage");
    });
  } catch (const AgreedExit& e) {
    code = e.code;
  }
  EXPECT_EQ(code, 1);
}

TEST(Agree, RethrowGivesEveryRankTheSameError) {
  auto c = make_world_communicator();
  const int last = c->size() - 1;
  std::exception_ptr mine;
  if (c->rank() == last) mine = std::make_exception_ptr(UsageError("--comm nccl: no GPU on this node"));
  try {
    agree_and_rethrow(*c, mine);
    ADD_FAILURE() << "no exception although rank " << last << " failed";
  } catch (const UsageError& e) {
    const std::string want = (last > 0 ? "[rank " + std::to_string(last) + "] " : std::string()) +
                             "--comm nccl: no GPU on this node";
    EXPECT_EQ(std::string(e.what()), want);
  }
  EXPECT_NO_THROW(agree_and_rethrow(*c, nullptr));
  EXPECT_EQ(c->all_reduce_host(1.0, RedOp::Sum), double(c->size()));
}

TEST(Agree, ExitCodeOf) {
  EXPECT_EQ(exit_code_of(std::make_exception_ptr(UsageError("x"))), 2);
  EXPECT_EQ(exit_code_of(std::make_exception_ptr(RuntimeError("x"))), 1);
  EXPECT_EQ(exit_code_of(std::make_exception_ptr(AgreedExit(7))), 7);
}

}  // namespace
}  // namespace mc
