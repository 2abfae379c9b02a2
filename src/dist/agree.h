// Agreeing on failure: an error that only some ranks hit must end every rank, once, without any rank
// entering a collective its peers will never reach (Note [Agreed failure]).
#pragma once
#include <exception>
#include <functional>
#include <string>

#include "dist/comm.h"

namespace mc {

// Note [Agreed failure]
// Ranks validate their input independently (each opens its own files, checks its own device), so one
// rank can fail where the others pass: a missing --data on one host, a GPU that is busy, a file that
// is only half copied. If that rank simply exits, the others wait in their next collective forever
// (or, worse, until the launcher notices). So every phase of start-up that can fail locally is run
// through run_agreed(): each rank runs its part, catching any exception, and then all ranks take part
// in the same small collective (two host all-reduces) that tells every rank whether anyone failed.
// If someone did, the LOWEST failing rank prints its own message (one line, "[rank r]" added when it is
// not rank 0) and every rank throws AgreedExit with that rank's exit code (2 for a UsageError, 1
// otherwise); nobody prints anything else. The collective itself cannot hang on a failed rank, since a
// failed rank still takes part; a rank that is stopped or killed is the watchdog's and the launcher's
// business (Note [Watchdog]).

// Every rank ends with this exit code; the message (if any) was already printed.
struct AgreedExit : std::exception {
  explicit AgreedExit(int c) : code(c) {}
  const char* what() const noexcept override { return "agreed exit"; }
  int code;
};

// Collective. If local (this rank's failure, may be null) or any peer's failure is set, prints the
// lowest failing rank's message there and throws AgreedExit on every rank; returns otherwise.
void agree_on_failure(Communicator& comm, std::exception_ptr local);

// Like agree_on_failure, for library code whose caller reports errors: nothing is printed; instead every
// rank throws the same exception, a UsageError or RuntimeError (by the lowest failing rank's exit code)
// carrying that rank's message ("[rank r] " added when r > 0), broadcast from it. comm must use host
// buffers.
void agree_and_rethrow(Communicator& comm, std::exception_ptr local);

// Runs step on this rank, then agree_on_failure with whatever it threw.
void run_agreed(Communicator& comm, const std::function<void()>& step);

// Collective: true when every rank passed the same s (compared by a 64-bit FNV-1a hash, both halves).
bool all_ranks_equal(Communicator& comm, const std::string& s);

// Exit code of an exception: 2 for UsageError (bad input), 1 for anything else.
int exit_code_of(std::exception_ptr e);
// One line on stderr: "minicolossus: [rank r] <message>" (the rank only when r > 0).
void print_failure(std::exception_ptr e, int rank);

}  // namespace mc
