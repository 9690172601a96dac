// Helpers shared by the tests: temporary directories and checked config parsing.
#pragma once

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/store/store.h"

// A run status in a failed check reads as its text ("done"), not "{?}".
namespace Catch {
template <>
struct StringMaker<moelab::RunStatus> {
  static std::string convert(moelab::RunStatus status) {
    return std::string(moelab::run_status_text(status));
  }
};
}  // namespace Catch

namespace moelab::testing {

// LibTorch's thread count set for a scope, the previous count restored after it.
class ThreadCountScope {
 public:
  explicit ThreadCountScope(int threads) : saved_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~ThreadCountScope() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

// The number of distinct threads an at::parallel_for over `tasks` single-task chunks runs on
// (1 if moelab's code were compiled without OpenMP, whatever the thread count).
inline int parallel_for_threads(int64_t tasks) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(at::get_num_threads()));
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) { seen[at::get_thread_num()] = 1; });
  int count = 0;
  for (const auto& flag : seen) count += flag.load();
  return count;
}

// A fresh directory under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            ("moelab-test-" + std::to_string(device()) + std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The ConfigError message produced by parsing `yaml` (fails the test if none is thrown).
inline std::string config_error(const std::string& yaml,
                                const std::vector<std::string>& overrides = {}) {
  try {
    parse_run_config(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError for:\n" << yaml);
  return "";
}

inline std::vector<int64_t> as_vector(const torch::Tensor& t) {
  auto values = t.contiguous().to(torch::kLong);
  return {values.data_ptr<int64_t>(), values.data_ptr<int64_t>() + values.numel()};
}

inline std::string fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }

// A whole file as text ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A command line run through the shell (run_moelab: the `moelab` binary with `args`); its
// exit code (-1 when a signal ended it) and its stdout and stderr together.
struct Command {
  int exit_code;
  std::string output;
};
inline Command run_shell(const std::string& command_line) {
  const std::string command = command_line + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}
inline Command run_moelab(const std::string& args) { return run_shell(std::string(MOELAB_BINARY) + " " + args); }

}  // namespace moelab::testing
