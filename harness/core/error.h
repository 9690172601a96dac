// Error policy: every failure throws moelab::Error (or a subclass) with context;
// only the run boundary (runner, CLI) catches. ConfigError means "the user's input
// is wrong" and maps to exit code 2; anything else that ends a run maps to 1.
// InternalError (MOELAB_CHECK) means moelab broke its own invariant: a bug to report, never
// the user's input (DuckDB's Internal vs InvalidInput).
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
  using Error::Error;  // a message naming its own input (a file, a command-line value)

  // A rule about one config key, "KEY = VALUE: RULE" with `what` = "VALUE: RULE". The key
  // ("model.heads") lets the config loader say where it was set (file, line and column).
  static ConfigError at_key(const std::string& key, const std::string& what) {
    ConfigError error(key + " = " + what);
    error.key_ = key;
    return error;
  }
  // The same error reported at another key (a router's own check run for
  // eval.router_override: "router.k" -> "eval.router_override.k").
  ConfigError rekeyed(const std::string& from_prefix, const std::string& to_prefix) const;
  const std::string& key() const { return key_; }  // "" when the message names its input

 private:
  std::string key_;
};

inline ConfigError ConfigError::rekeyed(const std::string& from_prefix,
                                        const std::string& to_prefix) const {
  if (key_.rfind(from_prefix, 0) != 0) return *this;
  const std::string message = what();
  return at_key(to_prefix + key_.substr(from_prefix.size()), message.substr(key_.size() + 3));
}

// A broken invariant of moelab's own code.
class InternalError : public Error {
 public:
  using Error::Error;
};

#define MOELAB_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      throw ::moelab::InternalError(fmt::format("internal error: {} ({}:{})",            \
                                                fmt::format(__VA_ARGS__), __FILE__,      \
                                                __LINE__));                              \
    }                                                                                    \
  } while (false)

}  // namespace moelab
