// Note [Numbers on the command line] (commands.cpp): every INT, UINT and FLOAT option of a command
// parsed with mc::parse takes plain decimal only, whatever CLI11 alone would accept.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../gtest_util.h"
#include "core/errors.h"
#include "train/commands.h"

using mc::test::expect_usage;

namespace {

struct Flags {
  int i = -7;
  uint64_t u = 7;
  double d = -7;
  float f = -7;
  std::vector<int> v;
  std::string s = "unset";
  bool b = false;
};

// Parses `args` (after the program name) into a fresh Flags through mc::parse.
Flags parse_args(std::vector<std::string> args) {
  Flags f;
  CLI::App app("test", "test");
  app.add_option("--i", f.i);
  app.add_option("--u", f.u);
  app.add_option("--d", f.d);
  app.add_option("--f", f.f);
  app.add_option("--v", f.v);
  app.add_option("--s", f.s);
  app.add_flag("--b", f.b);
  args.insert(args.begin(), "test");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(mc::parse(app, int(argv.size()), argv.data()), -1);
  return f;
}

}  // namespace

TEST(InputFlags, DecimalIsReadAsDecimal) {
  EXPECT_EQ(parse_args({"--i", "010"}).i, 10);  // CLI11 alone: 8 (octal)
  EXPECT_EQ(parse_args({"--i", "-007"}).i, -7);
  EXPECT_EQ(parse_args({"--i", "+5"}).i, 5);
  EXPECT_EQ(parse_args({"--i", "0"}).i, 0);
  EXPECT_EQ(parse_args({"--u", "0018446744073709551615"}).u, UINT64_MAX);
  EXPECT_EQ(parse_args({"--d", "1.5e-3"}).d, 1.5e-3);
  EXPECT_EQ(parse_args({"--d", ".5"}).d, 0.5);
  EXPECT_EQ(parse_args({"--d", "5."}).d, 5.0);
  EXPECT_EQ(parse_args({"--f", "-2E+2"}).f, -200.0f);
  EXPECT_EQ(parse_args({"--v", "08", "--v", "9"}).v, (std::vector<int>{8, 9}));
  // Text and flags are not numbers: untouched.
  EXPECT_EQ(parse_args({"--s", "0x10"}).s, "0x10");
  EXPECT_EQ(parse_args({"--s", ""}).s, "");
  EXPECT_TRUE(parse_args({"--b"}).b);
  // nan and inf reach the command's own range check, which names the value.
  EXPECT_TRUE(std::isnan(parse_args({"--d", "nan"}).d));
  EXPECT_TRUE(std::isinf(parse_args({"--d", "-Inf"}).d));
}

TEST(InputFlags, AnythingElseIsAUsageErrorNamingTheFlag) {
  auto refused = [](std::vector<std::string> args, std::initializer_list<std::string> parts) {
    expect_usage([&] { parse_args(args); }, parts);
  };
  refused({"--i", ""}, {"--i: empty value"});             // CLI11 alone: 0
  refused({"--d", ""}, {"--d: empty value"});
  refused({"--i", "0x10"}, {"--i 0x10: not a whole number in decimal"});  // CLI11 alone: 16
  refused({"--i", " 3"}, {"--i  3: not"});                // CLI11 alone: 3
  refused({"--i", "3 "}, {"--i 3 : not"});
  refused({"--i", "1e3"}, {"--i 1e3: not"});
  refused({"--i", "-"}, {"--i -: not"});
  refused({"--u", "-1"}, {"--u -1: not a whole number >= 0"});  // CLI11 alone: 2^64-1
  refused({"--u", "18446744073709551616"}, {"--u 18446744073709551616: out of range"});  // CLI11 alone: clamped
  refused({"--i", "99999999999999999999"}, {"--i 99999999999999999999: out of range"});
  refused({"--d", "0x1p3"}, {"--d 0x1p3: not a decimal number"});
  refused({"--d", "1e"}, {"--d 1e: not"});
  refused({"--d", "."}, {"--d .: not"});
  refused({"--d", "1.2.3"}, {"--d 1.2.3: not"});
  refused({"--f", "infinite"}, {"--f infinite: not"});
  refused({"--v", "1", "--v", "x"}, {"--v x: not"});
}
