// `moelab bench`: the benchmarks' options, and the one named run from the table of benchmarks
// (harness/cli/bench.h): its JSON with --json, else the text rendered from that JSON.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/cli/bench.h"
#include "harness/core/cpu_memory.h"
#include "harness/core/error.h"

namespace moelab {

namespace {

// The benchmarks' names, as the command line spells them.
std::vector<std::string> benchmark_names() {
  std::vector<std::string> names;
  for (const Benchmark& benchmark : benchmarks()) names.emplace_back(benchmark.name);
  return names;
}

// One line per benchmark: its name and what it measures.
std::string benchmark_help() {
  std::string help;
  for (const Benchmark& benchmark : benchmarks()) {
    help += fmt::format("\n  {:<9} {}", benchmark.name, benchmark.help);
  }
  return help;
}

const Benchmark& find_benchmark(const std::string& name) {
  const auto& table = benchmarks();
  const auto found = std::find_if(table.begin(), table.end(),
                                  [&](const Benchmark& entry) { return entry.name == name; });
  MOELAB_CHECK(found != table.end(), "bench: no benchmark {}", name);
  return *found;
}

}  // namespace

void add_bench_command(CLI::App& app, Command& command) {
  struct Args {
    std::string what;
    bool json = false;
    BenchOptions options;
  };
  auto args = std::make_shared<Args>();
  BenchOptions& options = args->options;
  const std::vector<std::string> names = benchmark_names();
  auto* bench = app.add_subcommand(
      "bench", fmt::format("performance benchmarks: {}", fmt::join(names, " | ")));
  bench->add_option("what", args->what, "the benchmark:" + benchmark_help())
      ->required()
      ->check(CLI::IsMember(names));
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
  bench->add_flag("--json", args->json, "JSON output: the figures the text is made from");
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
      const Benchmark& benchmark = find_benchmark(args->what);
      const nlohmann::json result = benchmark.measure(args->options, self);
      std::cout << (args->json ? result.dump(2) + "\n" : benchmark.render(result));
      fmt::print(args->json ? stderr : stdout,
                 "peak resident memory: {:.0f} MB this process, {:.0f} MB its largest child\n",
                 peak_resident_mb(), peak_child_resident_mb());
      return kExitOk;
    };
  });
}

}  // namespace moelab
