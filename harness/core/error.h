// Error policy: every failure throws moelab::Error (or a subclass) with context;
// only the run boundary (runner, CLI) catches. ConfigError means "the user's input
// is wrong" and maps to exit code 2; anything else that ends a run maps to 1.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace moelab {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input: config files, overrides, command-line values, data paths.
class ConfigError : public Error {
 public:
  using Error::Error;
};

#define MOELAB_CHECK(cond, ...)                                                     \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      throw ::moelab::Error(fmt::format("{} ({}:{})", fmt::format(__VA_ARGS__),     \
                                        __FILE__, __LINE__));                       \
    }                                                                               \
  } while (false)

}  // namespace moelab
