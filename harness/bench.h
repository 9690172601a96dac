// `moelab bench`: performance measurements (never timed tests). `routers` times, in one
// process, each registered router's decision and a training step of one MoE layer against a
// dense FFN of equal active FLOPs, plus SSR and S-BASE against top-k.
#pragma once

#include <string>

namespace moelab {

struct BenchOptions {
  int64_t tokens = 4096;
  int64_t dim = 256;
  int64_t hidden = 512;
  int64_t experts = 16;
  int64_t k = 2;
  int64_t threads = 2;
  int64_t repeats = 5;
  bool json = false;
  std::string sweep_file = "experiments/sweeps/smoke.yaml";  // bench sweep
};

std::string bench_matmul_report(const BenchOptions& options);
std::string bench_routers_report(const BenchOptions& options);
// The sweep runner on options.sweep_file (default the smoke sweep): its overhead beyond the
// runs' own time, metric logging's share of run time, and 2 workers' throughput against 1.
std::string bench_sweep_report(const BenchOptions& options, const std::string& executable);

}  // namespace moelab
