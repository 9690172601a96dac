// SciPy 1.10 as the independent reference of the statistics tests: tests/reference/
// stats_reference.py run under /usr/bin/python3 (python3-scipy, installed by setup.sh) at test
// time. A missing SciPy fails the test: the reference is part of the suite, not optional.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <limits>
#include <string>

#include "harness/core/subprocess.h"

namespace moelab::testing {

// The reference script's answers to `requests`, one per request, in order. A missing SciPy
// fails the test: the reference is part of the suite, not optional.
inline nlohmann::json scipy_reference(const nlohmann::json& requests) {
  const std::string script = std::string(MOELAB_SOURCE_DIR) + "/tests/reference/stats_reference.py";
  const CommandResult result = run_command({"/usr/bin/python3", script, requests.dump()});
  if (result.exit_code == 127 || result.exit_code == 3) {
    FAIL("/usr/bin/python3 with NumPy and SciPy is needed for the reference values: run "
         "harness/scripts/setup.sh (python3-scipy is in its PACKAGES)\n"
         << result.output);
  }
  if (result.exit_code != 0) FAIL("stats_reference.py failed:\n" << result.output);
  nlohmann::json answers = nlohmann::json::parse(result.output);
  REQUIRE(answers.size() == requests.size());
  return answers;
}

// JSON null (the script's NaN) as NaN.
inline double number(const nlohmann::json& value) {
  return value.is_null() ? std::numeric_limits<double>::quiet_NaN() : value.get<double>();
}

inline void check_close(double actual, const nlohmann::json& reference, double relative) {
  const double expected = number(reference);
  INFO("actual " << actual << ", expected " << expected);
  CHECK(actual == Approx(expected).epsilon(relative));
}

}  // namespace moelab::testing
