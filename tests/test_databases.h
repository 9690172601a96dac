// Results databases for the store's contract tests, on either engine: SQLite files in a
// temporary folder, or fresh databases on the test PostgreSQL server that
// harness/scripts/test_servers.sh starts (its URI in MOELAB_TEST_POSTGRES; test.sh and
// .ci/run start it). Every database made here is dropped when the object goes away.
#pragma once

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "harness/store/sql_connection.h"
#include "test_util.h"

namespace moelab::testing {

// The engines a contract test runs on, for GENERATE.
inline const std::vector<std::string>& engines() {
  static const std::vector<std::string> names = {"sqlite", "postgres"};
  return names;
}

// Why a test server is missing, or "" when test_servers.sh set `variable` (its URI, or 1):
// the reason it wrote in `skip_variable`, or how to start the servers.
inline std::string test_server_skip_reason(const char* variable, const char* skip_variable) {
  if (const char* value = std::getenv(variable); value != nullptr && *value != '\0') return "";
  const char* reason = std::getenv(skip_variable);
  return reason != nullptr ? reason
                           : std::string(variable) + " is not set: run the tests through "
                                                     "harness/scripts/test.sh, or start the servers "
                                                     "with harness/scripts/test_servers.sh start DIR "
                                                     "and source DIR/env";
}

inline std::string postgres_skip_reason() {
  return test_server_skip_reason("MOELAB_TEST_POSTGRES", "MOELAB_TEST_POSTGRES_SKIP");
}

class TestDatabases {
 public:
  explicit TestDatabases(std::string engine) : engine_(std::move(engine)) {
    if (engine_ == "postgres") {
      skip_reason_ = postgres_skip_reason();
      if (skip_reason_.empty()) server_ = std::getenv("MOELAB_TEST_POSTGRES");
    }
  }
  ~TestDatabases() {
    for (const auto& name : created_) {
      try {
        admin().execute_script(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", name));
      } catch (...) {  // the server went away: its folder goes with the test servers
      }
    }
  }
  TestDatabases(const TestDatabases&) = delete;
  TestDatabases& operator=(const TestDatabases&) = delete;

  // False (with a warning naming the reason) when this engine cannot be tested here.
  bool available() const {
    if (!skip_reason_.empty()) WARN("skipped on PostgreSQL: " << skip_reason_);
    return skip_reason_.empty();
  }
  const std::string& engine() const { return engine_; }
  bool postgres() const { return engine_ == "postgres"; }

  // A new, empty database: a file path, or the URI of a new database on the server.
  std::string create(const std::string& label) {
    if (!postgres()) return folder_.file(label + ".db");
    std::random_device device;
    const std::string name = fmt::format("moelab_t{}_{}", device() % 1000000000u, created_.size());
    admin().execute_script(fmt::format("CREATE DATABASE {}", name));
    created_.push_back(name);
    return server_.substr(0, server_.rfind('/') + 1) + name;
  }
  // A database that does not exist yet (SQLite files only; a server's must be created).
  std::string file(const std::string& name) const { return folder_.file(name); }
  const TempDir& folder() const { return folder_; }

 private:
  SqlConnection& admin() {
    if (!admin_) admin_ = open_postgres(server_, false);
    return *admin_;
  }

  std::string engine_, skip_reason_, server_;
  TempDir folder_;
  std::vector<std::string> created_;
  std::unique_ptr<SqlConnection> admin_;
};

}  // namespace moelab::testing
