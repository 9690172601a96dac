// Benchmarks: BLAS matmul, router decisions and the MoE layer (medians over repeats of wall
// time), and the sweep runner (overhead, logging share, worker scaling).
#include "harness/bench.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "harness/config.h"
#include "harness/moe_layer.h"
#include "harness/provenance.h"
#include "harness/store.h"
#include "harness/sweep_runner.h"
#include "routers/registry.h"

namespace moelab {
namespace {

double seconds_of(const std::function<void()>& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median_seconds(int64_t repeats, const std::function<void()>& body) {
  body();  // warm-up
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) times.push_back(seconds_of(body));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void apply_threads(const BenchOptions& options) {
  RunConfig config;
  config.threads = options.threads;
  config.blas_threads = 1;
  apply_thread_settings(config);
}

RunConfig bench_config(const BenchOptions& options, const std::string& router,
                       std::vector<std::string> extra = {}) {
  std::vector<std::string> overrides = {
      "router.name=" + router, fmt::format("model.dim={}", options.dim),
      fmt::format("model.moe.experts={}", options.experts),
      fmt::format("model.moe.expert_hidden={}", options.hidden)};
  for (auto& e : extra) overrides.push_back(std::move(e));
  return parse_run_config("", "bench", overrides);
}

// One MoE layer: forward + backward per call, training mode, step counter advancing.
struct LayerBench {
  MoELayer layer{nullptr};
  torch::Tensor x;
  int64_t step = 0;
  void run_step() {
    RouteContext ctx;
    ctx.training = true;
    ctx.step = ++step;
    ctx.group_size = 256;
    auto y = layer(x, ctx);
    (y.pow(2).mean() + layer->aux_loss()).backward();
  }
};

LayerBench make_layer_bench(const BenchOptions& options, const RunConfig& config) {
  torch::manual_seed(0);
  LayerBench bench;
  auto router = make_router(config.router, RouterShape{options.dim, options.experts, 0, 0});
  bench.layer = MoELayer(options.dim, config.model.moe, router);
  bench.x = torch::randn({options.tokens, options.dim}, torch::requires_grad());
  return bench;
}

// Interleaves blocks of steps of a and b so drift affects both alike; returns per-step times.
std::pair<double, double> paired_step_seconds(LayerBench& a, LayerBench& b, int64_t blocks,
                                              int64_t steps_per_block) {
  double total_a = 0, total_b = 0;
  a.run_step();
  b.run_step();
  for (int64_t block = 0; block < blocks; ++block) {
    total_a += seconds_of([&] { for (int64_t i = 0; i < steps_per_block; ++i) a.run_step(); });
    total_b += seconds_of([&] { for (int64_t i = 0; i < steps_per_block; ++i) b.run_step(); });
  }
  const double steps = static_cast<double>(blocks * steps_per_block);
  return {total_a / steps, total_b / steps};
}

}  // namespace

std::string bench_matmul_report(const BenchOptions& options) {
  apply_threads(options);
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  const double s = median_seconds(options.repeats * 4, [&] { a.mm(b); });
  const double gflops = 2.0 * 1024 * 1024 * 1024 / s / 1e9;
  if (options.json) return nlohmann::json{{"matmul_1024_gflops", gflops}}.dump(2) + "\n";
  return fmt::format("matmul 1024x1024x1024 fp32: {:.1f} GFLOP/s ({} LibTorch threads, 1 BLAS "
                     "thread){}\n",
                     gflops, options.threads,
                     gflops < 30 ? "  <- slow: is OpenBLAS the system BLAS? run harness/scripts/setup.sh"
                                 : "");
}

std::string bench_routers_report(const BenchOptions& options) {
  apply_threads(options);
  nlohmann::json out;
  out["shape"] = {{"tokens", options.tokens}, {"dim", options.dim}, {"hidden", options.hidden},
                  {"experts", options.experts}, {"k", options.k}, {"threads", options.threads}};
  std::string text = fmt::format(
      "moelab bench routers: T={} d={} hidden={} E={} k={}, {} LibTorch threads, median of {}\n\n",
      options.tokens, options.dim, options.hidden, options.experts, options.k, options.threads,
      options.repeats);

  // 1. Each router's decision (training mode, forward only).
  torch::manual_seed(0);
  auto x = torch::randn({options.tokens, options.dim});
  text += fmt::format("{:<14} {:>12}\n", "router", "decision ms");
  for (const auto& entry : router_registry()) {
    RunConfig config = bench_config(options, entry.name);
    auto router = make_router(config.router, RouterShape{options.dim, options.experts, 0, 0});
    RouteContext ctx;
    ctx.training = true;
    ctx.group_size = 256;
    torch::NoGradGuard no_grad;
    const double s = median_seconds(options.repeats, [&] { ctx.step++; router->route(x, ctx); });
    out["decision_ms"][entry.name] = s * 1e3;
    text += fmt::format("{:<14} {:>12.2f}\n", entry.name, s * 1e3);
  }

  // 2. MoE layer (top-k) against a dense FFN with the same active FLOPs (hidden k*H).
  const std::string k_option = fmt::format("router.k={}", options.k);
  LayerBench topk = make_layer_bench(options, bench_config(options, "topk", {k_option}));
  auto dense = torch::nn::Sequential(torch::nn::Linear(options.dim, options.k * options.hidden),
                                     torch::nn::GELU(),
                                     torch::nn::Linear(options.k * options.hidden, options.dim));
  auto dense_x = torch::randn({options.tokens, options.dim}, torch::requires_grad());
  const double dense_s = median_seconds(options.repeats, [&] {
    dense->forward(dense_x).pow(2).mean().backward();
  });
  const double moe_s = median_seconds(options.repeats, [&] { topk.run_step(); });
  out["dense_ffn_step_ms"] = dense_s * 1e3;
  out["moe_topk_step_ms"] = moe_s * 1e3;
  out["moe_over_dense"] = moe_s / dense_s;
  text += fmt::format("\nforward+backward, one layer\n  dense FFN (hidden {}): {:.1f} ms\n"
                      "  MoE, topk:           {:.1f} ms   ratio {:.2f}x (target <= 1.5x)\n",
                      options.k * options.hidden, dense_s * 1e3, moe_s * 1e3, moe_s / dense_s);

  // 3. SSR at p = 0.01 and S-BASE (Sinkhorn every step) against top-k, per training step.
  LayerBench ssr = make_layer_bench(options, bench_config(options, "ssr", {k_option, "router.p=0.01"}));
  auto [topk_s, ssr_s] = paired_step_seconds(topk, ssr, options.repeats * 4, 10);
  LayerBench topk1 = make_layer_bench(options, bench_config(options, "topk", {"router.k=1"}));
  LayerBench sbase = make_layer_bench(options, bench_config(options, "sbase", {"router.k=1"}));
  auto [topk1_s, sbase_s] = paired_step_seconds(topk1, sbase, options.repeats, 4);
  out["ssr_p0.01_over_topk"] = ssr_s / topk_s;
  out["sbase_over_topk_k1"] = sbase_s / topk1_s;
  text += fmt::format(
      "  ssr p=0.01 vs topk:  {:.1f} ms vs {:.1f} ms per step, {:+.1f}% (target within 3%)\n"
      "  sbase vs topk (k=1): {:.1f} ms vs {:.1f} ms per step, {:+.1f}% (Sinkhorn every step)\n",
      ssr_s * 1e3, topk_s * 1e3, 100 * (ssr_s / topk_s - 1), sbase_s * 1e3, topk1_s * 1e3,
      100 * (sbase_s / topk1_s - 1));
  return options.json ? out.dump(2) + "\n" : text;
}

}  // namespace moelab

namespace moelab {

namespace {

struct SweepTiming {
  double wall = 0, run_seconds = 0, log_seconds = 0;
  double overhead(int64_t workers) const {  // wall time beyond the runs' own, per worker
    return (wall - run_seconds / static_cast<double>(workers)) / wall;
  }
};

SweepTiming time_sweep(const BenchOptions& options, const std::string& executable,
                       const std::filesystem::path& dir, int64_t workers, int64_t repeat) {
  const std::string db = (dir / fmt::format("w{}-{}.db", workers, repeat)).string();
  SweepPlan plan = expand_sweep(options.sweep_file,
                                {"db=" + db, "checkpoint_dir=" + (dir / "ckpt").string(),
                                 "threads=1"});
  plan.name = fmt::format("bench{}", workers);
  SweepOptions sweep;
  sweep.workers = workers;
  sweep.threads_per_worker = 1;
  sweep.executable = executable;
  { Store create(db); }  // an existing database, as for every sweep but a project's first
  SweepTiming timing;
  timing.wall = seconds_of([&] { run_sweep(plan, sweep); });
  Store store(db);
  auto totals = store.query(
      "SELECT SUM(r.wall_seconds), SUM(s.value) FROM runs r JOIN summaries s ON "
      "s.run_id = r.id AND s.name = 'train/log_seconds' WHERE r.status = 'done'");
  timing.run_seconds = totals.rows[0][0].real;
  timing.log_seconds = totals.rows[0][1].real;
  return timing;
}

// "median (min-max)" of a measured quantity over the repeats.
struct Spread {
  double median, low, high;
  explicit Spread(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    median = values[values.size() / 2];
    low = values.front();
    high = values.back();
  }
  nlohmann::json json() const { return {{"median", median}, {"min", low}, {"max", high}}; }
  std::string text(double scale, const char* unit) const {
    return fmt::format("{:.2f}{} ({:.2f}-{:.2f})", median * scale, unit, low * scale, high * scale);
  }
};

}  // namespace

std::string bench_sweep_report(const BenchOptions& options, const std::string& executable) {
  const auto dir = std::filesystem::temp_directory_path() /
                   fmt::format("moelab-bench-sweep-{}", static_cast<long>(getpid()));
  std::filesystem::create_directories(dir);
  // Alternating 1 and 2 workers, so drift on the machine affects both alike.
  std::map<int64_t, std::vector<SweepTiming>> timings;
  for (int64_t repeat = 0; repeat < options.repeats; ++repeat) {
    for (int64_t workers : {1, 2}) {
      timings[workers].push_back(time_sweep(options, executable, dir, workers, repeat));
    }
  }
  std::filesystem::remove_all(dir);

  const size_t runs = expand_sweep(options.sweep_file).runs.size();
  nlohmann::json out = {{"sweep", options.sweep_file}, {"runs", runs}, {"repeats", options.repeats}};
  std::string text = fmt::format(
      "moelab bench sweep: {} ({} runs), 1 LibTorch thread per run, {} repeats: median "
      "(min-max)\n",
      options.sweep_file, runs, options.repeats);
  for (int64_t workers : {1, 2}) {
    std::vector<double> wall, overhead, logging, speedup;
    for (size_t i = 0; i < timings[workers].size(); ++i) {
      const SweepTiming& t = timings[workers][i];
      wall.push_back(t.wall);
      overhead.push_back(t.overhead(workers));
      logging.push_back(t.log_seconds / t.run_seconds);
      speedup.push_back(timings[1][i].wall / t.wall);
    }
    const Spread walls(wall), overheads(overhead), logs(logging), speedups(speedup);
    out[fmt::format("workers_{}", workers)] = {
        {"wall_seconds", walls.json()}, {"runner_overhead", overheads.json()},
        {"logging_share", logs.json()}, {"throughput_vs_1_worker", speedups.json()}};
    text += fmt::format("{} worker(s): wall {}, runner overhead {}, metric logging {} of run time",
                        workers, walls.text(1, "s"), overheads.text(100, "%"),
                        logs.text(100, "%"));
    text += workers == 1 ? "\n" : fmt::format(", throughput {} of 1 worker\n", speedups.text(1, "x"));
  }
  return options.json ? out.dump(2) + "\n" : text;
}

}  // namespace moelab
