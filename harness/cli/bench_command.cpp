// `moelab bench`: the benchmarks' options and their dispatch (harness/cli/bench.h).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/cli/bench.h"
#include "harness/core/cpu_memory.h"

namespace moelab {

void add_bench_command(CLI::App& app, Command& command) {
  struct Args {
    std::string what;
    BenchOptions options;
  };
  auto args = std::make_shared<Args>();
  BenchOptions& options = args->options;
  auto* bench = app.add_subcommand(
      "bench", "performance benchmarks: matmul | routers | sweep | moe | sinkhorn | lm | image | store");
  bench->add_option("what", args->what, "matmul | routers | sweep | moe | sinkhorn | lm | image | store")
      ->required()
      ->check(CLI::IsMember({"matmul", "routers", "sweep", "moe", "sinkhorn", "lm", "image", "store"}));
  bench->add_option("--device", options.device, "moe, sinkhorn, lm: cpu, cuda or cuda:N");
  bench->add_option("--dim", options.dim, "model width d");
  bench->add_option("--hidden", options.hidden, "expert hidden width");
  bench->add_option("--experts", options.experts, "experts E");
  bench->add_option("--k", options.k, "experts per token k");
  bench->add_option("--logit-std", options.logit_std, "sinkhorn: std of the random logits");
  bench->add_option("--batch", options.batch, "lm: sequences per step");
  bench->add_option("--seq-len", options.seq_len, "lm: tokens per sequence");
  bench->add_option("--depth", options.depth, "lm: blocks");
  bench->add_option("--heads", options.heads, "lm: attention heads");
  bench->add_option("--steps", options.steps, "lm, image: timed training steps per round")
      ->check(CLI::Range(1, 1000000));
  bench->add_option("--python", options.python,
                    "the Python (with torch) that runs the eager PyTorch reference");
  bench->add_flag("--json", options.json, "JSON output");
  bench->add_option("--threads", options.threads, "LibTorch threads");
  bench->add_option("--repeats", options.repeats, "repeats per measurement (lm, image: rounds)")
      ->check(CLI::Range(1, 1000000));
  bench->add_option("--tokens", options.tokens, "tokens T");
  bench->add_option("--postgres", options.postgres,
                    "store: an existing PostgreSQL database (URI) to measure beside SQLite");
  bench->add_option("--runs", options.store_runs, "store: runs queued per measurement")->check(CLI::Range(1, 100000));
  bench->add_option("--sweep", options.sweep_file, "bench sweep: the sweep file to run")
      ->check(CLI::ExistingFile);
  bench->callback([args, &command] {
    command = [args] {
      const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
      const BenchOptions& options = args->options;
      const std::string& what = args->what;
      if (what == "sweep") std::cout << bench_sweep_report(options, self);
      if (what == "store") std::cout << bench_store_report(options, self);
      if (what == "lm") std::cout << bench_lm_report(options, self);
      if (what == "image") std::cout << bench_image_report(options, self);
      if (what == "moe") std::cout << bench_moe_report(options);
      if (what == "sinkhorn") std::cout << bench_sinkhorn_report(options);
      if (what == "matmul") std::cout << bench_matmul_report(options);
      if (what == "routers") std::cout << bench_routers_report(options);
      fmt::print(options.json ? stderr : stdout,
                 "peak resident memory: {:.0f} MB this process, {:.0f} MB its largest child\n",
                 peak_resident_mb(), peak_child_resident_mb());
      return kExitOk;
    };
  });
}

}  // namespace moelab
