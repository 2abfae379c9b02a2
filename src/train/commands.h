// Subcommand entry points, called by src/main.cpp. argv[0] is "minicolossus <sub>"; each returns the
// process exit code (0 ok, 2 bad usage/input, 1 runtime failure) or throws UsageError/RuntimeError.
#pragma once
#include <exception>
#include <string>

namespace CLI {
class App;
}

namespace mc {
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_sample(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_prepare(int argc, char** argv);
int cmd_info(int argc, char** argv);      // src/train/info.cpp
int cmd_simulate(int argc, char** argv);  // src/sim/cmd_simulate.cpp
int this_rank();                          // world rank for messages (0 before MPI is up)
void report_error(const std::exception& e);  // "minicolossus: <message>" on stderr
// Parses argv with app; returns -1 to continue, or 0 after printing --help; bad flags throw UsageError.
// Every number flag must be plain decimal (Note [Numbers on the command line] in commands.cpp).
int parse(CLI::App& app, int argc, char** argv);
// The same without reporting: returns 0 after printing --help, -1 otherwise, with a bad flag left in
// *err as a UsageError for the caller to report (train first agrees on it across ranks).
int parse_flags(CLI::App& app, int argc, char** argv, std::exception_ptr* err);
// "cpu" or "cuda"; UsageError naming --device otherwise.
std::string resolve_device(const std::string& d);
}  // namespace mc
