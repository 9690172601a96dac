// `moelab bench`: performance measurements (never timed tests). `routers` times, in one
// process, each registered router's decision and a training step of one MoE layer against a
// dense FFN of equal active FLOPs, plus SSR and S-BASE against top-k. `moe`, `sinkhorn`, `lm`
// and `image` run on any device and put an eager PyTorch reference beside moelab's figure.
#pragma once

#include <string>

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
  bool json = false;
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

std::string bench_matmul_report(const BenchOptions& options);
std::string bench_routers_report(const BenchOptions& options);
// The sweep runner on options.sweep_file (default the smoke sweep): its overhead beyond the
// runs' own time, metric logging's share of run time, and 2 workers' throughput against 1.
std::string bench_sweep_report(const BenchOptions& options, const std::string& executable);
// One MoE layer (top-k) forward+backward at options' shape on options.device, against a dense
// FFN of the same active FLOPs (in process) and an eager PyTorch loop over experts (Python).
std::string bench_moe_report(const BenchOptions& options);
// Balanced Sinkhorn on [tokens, experts] logits: moelab's solver (error checked every
// check_every iterations) against the same solver checking, with a host sync, every iteration.
std::string bench_sinkhorn_report(const BenchOptions& options);
// LM training throughput (tokens/s) of `moelab run` on the char LM at options' shape, against
// the same model trained in eager PyTorch (Python) in the same invocation.
std::string bench_lm_report(const BenchOptions& options, const std::string& executable);
// Image training throughput (images/s) of `moelab run` on the quickstart ViT, against the same
// model trained in eager PyTorch (Python) in the same invocation.
std::string bench_image_report(const BenchOptions& options, const std::string& executable);
// The results store under 1 and 4 worker processes (claim latency, metric-logging throughput),
// SQLite and, given options.postgres, PostgreSQL; and options.sweep_file through Slurm against
// local workers where sbatch is on PATH (harness/cli/bench_store.cpp).
std::string bench_store_report(const BenchOptions& options, const std::string& executable);

}  // namespace moelab
