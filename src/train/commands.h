// Subcommand entry points, called by src/main.cpp. argv[0] is "minicolossus <sub>"; each returns the
// process exit code (0 ok, 2 bad usage/input, 1 runtime failure) or throws UsageError/RuntimeError.
#pragma once
#include <exception>

namespace mc {
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_sample(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_prepare(int argc, char** argv);
int this_rank();                          // world rank for messages (0 before MPI is up)
void report_error(const std::exception& e);  // "minicolossus: <message>" on stderr
}  // namespace mc
