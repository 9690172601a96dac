// `moelab bench`: performance measurements (never timed tests), one table of them. Each
// benchmark measures into JSON, and its text is rendered from that JSON alone. `routers` times,
// in one process, each registered router's decision and a training step of one MoE layer
// against a dense FFN of equal active FLOPs, plus SSR and S-BASE against top-k. `moe`,
// `sinkhorn`, `lm` and `image` run on any device; `moe`, `lm` and `image` put an eager
// PyTorch reference beside moelab's figure.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moelab {

struct BenchOptions {
  std::string device = "cpu";  // cpu, cuda, cuda:N
  int64_t tokens = 4096;
  int64_t dim = 256;
  int64_t hidden = 512;
  int64_t experts = 16;
  int64_t k = 2;
  int64_t threads = 2;
  int64_t repeats = 5;
  std::string sweep_file = "experiments/sweeps/smoke.yaml";  // bench sweep
  double logit_std = 1.0;  // bench sinkhorn: standard deviation of the random logits
  // bench lm: the model trained (batch x seq_len tokens per step, `steps` timed steps).
  int64_t batch = 4, seq_len = 128, depth = 4, heads = 8, steps = 20;
  // The Python that runs the eager PyTorch reference; empty = the first of $MOELAB_PYTHON,
  // python3 and /usr/bin/python3 that imports torch.
  std::string python;
  // bench store: an existing PostgreSQL database to measure beside SQLite (its rows are
  // removed again), and the runs queued per measurement.
  std::string postgres;
  int64_t store_runs = 200;
};

// One benchmark: measure() runs it (executable: this moelab binary, for those that start
// `moelab run` or `moelab sweep`) and returns every figure as JSON; render() is the text
// report, made from that JSON alone.
struct Benchmark {
  std::string_view name, help;
  nlohmann::json (*measure)(const BenchOptions& options, const std::string& executable);
  std::string (*render)(const nlohmann::json& result);
};

// Every benchmark, in the order of `moelab bench --help` (harness/cli/bench.cpp).
const std::vector<Benchmark>& benchmarks();

// The benchmarks the table lists, each a measure/render pair.
// A 1024^3 fp32 matmul through the BLAS LibTorch calls (harness/cli/bench_layers.cpp).
nlohmann::json measure_matmul(const BenchOptions& options, const std::string& executable);
std::string render_matmul(const nlohmann::json& result);
// Each router's decision and MoE layer step; the layer against a dense FFN; SSR and S-BASE
// against top-k (bench_layers.cpp).
nlohmann::json measure_routers(const BenchOptions& options, const std::string& executable);
std::string render_routers(const nlohmann::json& result);
// One MoE layer (top-k) forward+backward at options' shape on options.device, against a dense
// FFN of the same active FLOPs (in process) and an eager PyTorch loop over experts (Python)
// (bench_layers.cpp).
nlohmann::json measure_moe(const BenchOptions& options, const std::string& executable);
std::string render_moe(const nlohmann::json& result);
// Balanced Sinkhorn on [tokens, experts] logits: moelab's solver (error checked every
// check_every iterations) against the same solver checking, with a host sync, every iteration
// (bench_layers.cpp).
nlohmann::json measure_sinkhorn(const BenchOptions& options, const std::string& executable);
std::string render_sinkhorn(const nlohmann::json& result);
// The sweep runner on options.sweep_file (default the smoke sweep): its overhead beyond the
// runs' own time, metric logging's share of run time, and 2 workers' throughput against 1
// (bench_sweep.cpp).
nlohmann::json measure_sweep(const BenchOptions& options, const std::string& executable);
std::string render_sweep(const nlohmann::json& result);
// LM training throughput (tokens/s) of `moelab run` on the char LM at options' shape, against
// the same model trained in eager PyTorch (Python) in the same invocation (bench_training.cpp).
nlohmann::json measure_lm(const BenchOptions& options, const std::string& executable);
std::string render_lm(const nlohmann::json& result);
// Image training throughput (images/s) of `moelab run` on the quickstart ViT, against the same
// model trained in eager PyTorch (Python) in the same invocation (bench_training.cpp).
nlohmann::json measure_image(const BenchOptions& options, const std::string& executable);
std::string render_image(const nlohmann::json& result);
// The quickstart ViT's training steps with routing traces (train.trace_every) against
// without, in alternating rounds (bench_training.cpp).
nlohmann::json measure_trace(const BenchOptions& options, const std::string& executable);
std::string render_trace(const nlohmann::json& result);
// The results store under 1 and 4 worker processes (claim latency, metric-logging throughput),
// SQLite and, given options.postgres, PostgreSQL; and options.sweep_file through Slurm against
// local workers where sbatch is on PATH (bench_store.cpp).
nlohmann::json measure_store(const BenchOptions& options, const std::string& executable);
std::string render_store(const nlohmann::json& result);

// Shared by the benchmarks' files (defined in bench.cpp).

// Wall seconds of body(), including the work it queued on `device` (a GPU runs asynchronously
// to the host).
double seconds_of(const std::function<void()>& body, const std::string& device = "cpu");
// The median of `repeats` timings of body(), after one untimed warm-up call.
double median_seconds(int64_t repeats, const std::function<void()>& body,
                      const std::string& device = "cpu");

// {"median", "min", "max"} of a quantity measured over repeats (values non-empty).
nlohmann::json spread(std::vector<double> values);
// "median (min-max)" of spread(), each times `scale`, followed by `unit`: "1.23s (1.01-1.50)".
std::string spread_text(const nlohmann::json& spread, double scale, const char* unit);

// Where a benchmark ran, from its JSON's "device" and "threads": "cuda:0 (CUDA)" or "cpu, 2
// LibTorch threads".
std::string device_text(const nlohmann::json& result);

// {"--name", "value", ...}: integer flags as separate arguments.
std::vector<std::string> flag_args(
    std::initializer_list<std::pair<const char*, int64_t>> flags);

// Runs harness/scripts/eager_reference.py `what` on options' device and threads with `args`
// (OPENBLAS_NUM_THREADS=1, as moelab's BLAS); its JSON result, or {"error": why} (the benchmark
// then reports moelab's figure alone).
nlohmann::json eager_reference(const BenchOptions& options, const std::string& what,
                               const std::vector<std::string>& args);

// A fresh folder under the system's temporary directory, named `prefix`-PID; removed with its
// contents when this goes out of scope, also when a measurement throws.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace moelab
