// GoogleTest helpers shared by the unit tests: a scratch directory per running test, and the check
// every "bad input" test makes (a UsageError whose one-line message names what it must).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <string>

#include "core/errors.h"

namespace mc::test {

// A fresh empty directory /tmp/mc_test_<tag>_<test name>_<pid>.
inline std::string test_scratch(const std::string& tag) {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path d = std::filesystem::path("/tmp") /
                                  ("mc_test_" + tag + "_" + info->name() + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

// Expects f() to throw a UsageError whose message is one line containing every one of parts.
template <class F>
void expect_usage(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no UsageError thrown";
  } catch (const UsageError& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message: " << m << "\nmissing: " << p;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "message must be one line: " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

}  // namespace mc::test
