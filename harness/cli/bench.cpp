// The table of benchmarks, and what their files share: timing, spreads over repeats, the
// eager PyTorch reference (a Python child, run without a shell), scratch folders.
#include "harness/cli/bench.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "harness/core/build_info.h"
#include "harness/core/subprocess.h"

namespace moelab {

const std::vector<Benchmark>& benchmarks() {
  static const std::vector<Benchmark> table = {
      {"matmul", "the BLAS (library and running core) and a 1024^3 fp32 matmul", measure_matmul,
       render_matmul},
      {"routers",
       "every router's decision and MoE layer step; MoE against dense; SSR, S-BASE; dense router "
       "gradient",
       measure_routers, render_routers},
      {"sweep", "the sweep runner's overhead, metric logging's share, 2 workers against 1",
       measure_sweep, render_sweep},
      {"moe", "one MoE layer against a dense FFN and an eager PyTorch loop over experts",
       measure_moe, render_moe},
      {"sinkhorn", "balanced Sinkhorn, moelab's solver against a host sync every iteration",
       measure_sinkhorn, render_sinkhorn},
      {"lm", "char-LM training tokens/s of moelab run against eager PyTorch", measure_lm,
       render_lm},
      {"image", "quickstart ViT training images/s of moelab run against eager PyTorch",
       measure_image, render_image},
      {"trace", "training with routing traces against without (quickstart ViT)", measure_trace,
       render_trace},
      {"store", "the results store under 1 and 4 workers; a sweep through Slurm", measure_store,
       render_store},
  };
  return table;
}

namespace {

// Waits for the device's queued work.
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// The first Python that imports torch: options.python, $MOELAB_PYTHON, python3, /usr/bin/python3.
std::string find_python(const BenchOptions& options) {
  std::vector<std::string> candidates;
  if (!options.python.empty()) candidates.push_back(options.python);
  if (const char* env = std::getenv("MOELAB_PYTHON")) candidates.emplace_back(env);
  candidates.emplace_back("python3");
  candidates.emplace_back("/usr/bin/python3");
  for (const auto& python : candidates) {
    if (run_command({python, "-c", "import torch"}).exit_code == 0) return python;
  }
  return "";
}

// The last non-empty line of `text`, without its newline.
std::string last_line(const std::string& text) {
  const auto end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const auto start = text.rfind('\n', end);
  const size_t first = start == std::string::npos ? 0 : start + 1;
  return text.substr(first, end - first + 1);
}

}  // namespace

double seconds_of(const std::function<void()>& body, const std::string& device) {
  const torch::Device on(device);
  synchronize(on);
  const auto start = std::chrono::steady_clock::now();
  body();
  synchronize(on);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median_seconds(int64_t repeats, const std::function<void()>& body,
                      const std::string& device) {
  body();  // warm-up
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) times.push_back(seconds_of(body, device));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

nlohmann::json spread(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {{"median", values[values.size() / 2]}, {"min", values.front()}, {"max", values.back()}};
}

std::string spread_text(const nlohmann::json& spread, double scale, const char* unit) {
  return fmt::format("{:.2f}{} ({:.2f}-{:.2f})", spread["median"].get<double>() * scale, unit,
                     spread["min"].get<double>() * scale, spread["max"].get<double>() * scale);
}

std::string device_text(const nlohmann::json& result) {
  const std::string device = result["device"].get<std::string>();
  return torch::Device(device).is_cuda()
             ? device + " (CUDA)"
             : fmt::format("cpu, {} LibTorch threads", result["threads"].get<int64_t>());
}

std::vector<std::string> flag_args(
    std::initializer_list<std::pair<const char*, int64_t>> flags) {
  std::vector<std::string> args;
  for (const auto& [name, value] : flags) {
    args.emplace_back(name);
    args.push_back(std::to_string(value));
  }
  return args;
}

nlohmann::json eager_reference(const BenchOptions& options, const std::string& what,
                               const std::vector<std::string>& args) {
  const std::string python = find_python(options);
  if (python.empty()) {
    return {{"error",
             "no Python that imports torch (install python3-torch, or set MOELAB_PYTHON)"}};
  }
  std::vector<std::string> argv = {"env", "OPENBLAS_NUM_THREADS=1", python,
                                   std::string(kSourceDir) + "/harness/scripts/eager_reference.py",
                                   what, "--device", options.device,
                                   "--threads", std::to_string(options.threads)};
  argv.insert(argv.end(), args.begin(), args.end());
  const CommandResult result = run_command(argv);
  const std::string line = last_line(result.output);
  if (result.exit_code != 0) return {{"error", fmt::format("exit {}: {}", result.exit_code, line)}};
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    return {{"error", "unreadable output: " + line}};
  }
}

ScratchDir::ScratchDir(const std::string& prefix)
    : path_(std::filesystem::temp_directory_path() /
            fmt::format("{}-{}", prefix, static_cast<long>(getpid()))) {
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace moelab
