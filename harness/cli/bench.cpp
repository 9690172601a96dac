// Benchmarks: BLAS matmul, router decisions and the MoE layer (medians over repeats of wall
// time), and the sweep runner (overhead, logging share, worker scaling).
#include "harness/cli/bench.h"
#include "harness/core/subprocess.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "harness/core/blas.h"
#include "harness/core/build_info.h"
#include "harness/config/config.h"
#include "harness/core/error.h"
#include "harness/model/moe_layer.h"
#include "harness/train/provenance.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep_runner.h"
#include "routers/registry.h"
#include "routers/sinkhorn.h"

namespace moelab {
namespace {

// Waits for the device's queued work (a GPU runs asynchronously to the host).
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Wall time of body(), including the device work it queued.
double seconds_of(const std::function<void()>& body, const torch::Device& device = torch::kCPU) {
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  body();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median_seconds(int64_t repeats, const std::function<void()>& body,
                      const torch::Device& device = torch::kCPU) {
  body();  // warm-up
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) times.push_back(seconds_of(body, device));
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
    RoutingRecord record;
    ctx.record = &record;
    auto y = layer(x, ctx);
    (y.pow(2).mean() + record.total_aux_loss(y.device())).backward();
  }
};

LayerBench make_layer_bench(const BenchOptions& options, const RunConfig& config) {
  torch::manual_seed(0);
  LayerBench bench;
  auto router = make_router(config.router, RouterShape{options.dim, options.experts, 0, 0});
  bench.layer = MoELayer(options.dim, config.model.moe, router);
  bench.layer->to(torch::Device(options.device));
  bench.x = torch::randn({options.tokens, options.dim},
                         torch::TensorOptions(torch::Device(options.device)).requires_grad(true));
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
  const std::string core = openblas_core();
  if (options.json) {
    return nlohmann::json{{"matmul_1024_gflops", gflops}, {"blas", blas_description()},
                          {"blas_core", core}}
               .dump(2) + "\n";
  }
  std::string hint;
  if (core.empty()) {
    hint = "\n  <- not OpenBLAS: the reference BLAS is ~25x slower; harness/scripts/setup.sh "
           "makes OpenBLAS the system BLAS";
  } else if (const std::string better = better_openblas_core(cpu_features(), core); !better.empty()) {
    hint = fmt::format("\n  <- OpenBLAS runs its {} kernels on a CPU with wider vectors "
                       "(OPENBLAS_CORETYPE={} is what moelab chooses unless you set one)",
                       core, better);
  }
  return fmt::format("BLAS: {}\nmatmul 1024x1024x1024 fp32: {:.1f} GFLOP/s ({} LibTorch threads, "
                     "1 BLAS thread, core {}){}\n",
                     blas_description(), gflops, options.threads, core.empty() ? "-" : core, hint);
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
  // Beside it, the whole MoE layer's training step (forward + backward) with that router.
  text += fmt::format("{:<14} {:>12} {:>16}\n", "router", "decision ms", "layer step ms");
  for (const auto& entry : router_registry()) {
    RunConfig config = bench_config(options, entry.name);
    auto router = make_router(config.router, RouterShape{options.dim, options.experts, 0, 0});
    RouteContext ctx;
    ctx.training = true;
    ctx.group_size = 256;
    double decision_s = 0.0;
    {
      torch::NoGradGuard no_grad;
      decision_s = median_seconds(options.repeats, [&] { ctx.step++; router->route(x, ctx); });
    }
    LayerBench layer = make_layer_bench(options, config);
    const double step_s = median_seconds(options.repeats, [&] { layer.run_step(); });
    out["decision_ms"][entry.name] = decision_s * 1e3;
    out["layer_step_ms"][entry.name] = step_s * 1e3;
    text += fmt::format("{:<14} {:>12.2f} {:>16.2f}\n", entry.name, decision_s * 1e3, step_s * 1e3);
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

namespace moelab {
namespace {

// The first Python that imports torch: options.python, $MOELAB_PYTHON, python3, /usr/bin/python3.
std::string find_python(const BenchOptions& options) {
  std::vector<std::string> candidates;
  if (!options.python.empty()) candidates.push_back(options.python);
  if (const char* env = std::getenv("MOELAB_PYTHON")) candidates.emplace_back(env);
  candidates.emplace_back("python3");
  candidates.emplace_back("/usr/bin/python3");
  for (const auto& python : candidates) {
    if (std::system((python + " -c 'import torch' > /dev/null 2>&1").c_str()) == 0) return python;
  }
  return "";
}

// Output and exit status of a shell command line.
std::pair<std::string, int> run_shell(const std::string& command) {
  const CommandResult result = run_command({"/bin/sh", "-c", command});
  return {result.output, result.exit_code};
}

std::string last_line(const std::string& text) {
  const auto end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// Runs harness/scripts/eager_reference.py `what args` on options' device and threads; its
// JSON result, or {"error": why} (the benchmark then reports moelab's figure alone).
nlohmann::json eager_reference(const BenchOptions& options, const std::string& what,
                               const std::string& args) {
  const std::string python = find_python(options);
  if (python.empty()) {
    return {{"error", "no Python that imports torch (install python3-torch, or set MOELAB_PYTHON)"}};
  }
  const std::string command = fmt::format(
      "OPENBLAS_NUM_THREADS=1 {} {}/harness/scripts/eager_reference.py {} --device {} "
      "--threads {} {}",
      python, kSourceDir, what, options.device, options.threads, args);
  const auto [output, status] = run_shell(command);
  if (status != 0) return {{"error", fmt::format("exit {}: {}", status, last_line(output))}};
  try {
    return nlohmann::json::parse(last_line(output));
  } catch (const nlohmann::json::exception&) {
    return {{"error", "unreadable output: " + last_line(output)}};
  }
}

std::string device_name(const BenchOptions& options) {
  return torch::Device(options.device).is_cuda() ? options.device + " (CUDA)"
                                                 : fmt::format("cpu, {} LibTorch threads", options.threads);
}

}  // namespace

std::string bench_moe_report(const BenchOptions& options) {
  apply_threads(options);
  const torch::Device device(options.device);
  LayerBench topk = make_layer_bench(
      options, bench_config(options, "topk", {fmt::format("router.k={}", options.k)}));
  torch::manual_seed(0);
  auto dense = torch::nn::Sequential(torch::nn::Linear(options.dim, options.k * options.hidden),
                                     torch::nn::GELU(),
                                     torch::nn::Linear(options.k * options.hidden, options.dim));
  dense->to(device);
  auto dense_x = torch::randn({options.tokens, options.dim},
                              torch::TensorOptions(device).requires_grad(true));
  const double dense_s = median_seconds(
      options.repeats, [&] { dense->forward(dense_x).pow(2).mean().backward(); }, device);
  const double moe_s = median_seconds(options.repeats, [&] { topk.run_step(); }, device);
  const nlohmann::json eager = eager_reference(
      options, "moe",
      fmt::format("--repeats {} --tokens {} --dim {} --hidden {} --experts {} --k {}",
                  options.repeats, options.tokens, options.dim, options.hidden, options.experts,
                  options.k));
  nlohmann::json out = {{"device", options.device},        {"tokens", options.tokens},
                        {"dim", options.dim},              {"hidden", options.hidden},
                        {"experts", options.experts},      {"k", options.k},
                        {"moe_topk_step_ms", moe_s * 1e3}, {"dense_ffn_step_ms", dense_s * 1e3},
                        {"moe_over_dense", moe_s / dense_s}, {"eager", eager}};
  std::string text = fmt::format(
      "moelab bench moe: T={} d={} hidden={} E={} k={} on {}, forward+backward, median of {}\n"
      "  dense FFN (hidden {}):   {:9.3f} ms\n"
      "  moelab MoE layer, topk:  {:9.3f} ms   {:.2f}x the dense FFN\n",
      options.tokens, options.dim, options.hidden, options.experts, options.k,
      device_name(options), options.repeats, options.k * options.hidden, dense_s * 1e3,
      moe_s * 1e3, moe_s / dense_s);
  if (eager.contains("eager_loop_step_ms")) {
    const double loop_ms = eager["eager_loop_step_ms"].get<double>();
    out["eager_loop_over_moe"] = loop_ms / (moe_s * 1e3);
    text += fmt::format(
        "  eager PyTorch loop over experts (torch {}): {:.3f} ms: moelab is {:.2f}x faster\n"
        "  eager PyTorch dense FFN: {:.3f} ms\n",
        eager["torch"].get<std::string>(), loop_ms, loop_ms / (moe_s * 1e3),
        eager["dense_ffn_step_ms"].get<double>());
  } else {
    text += "  eager PyTorch reference not run: " + eager["error"].get<std::string>() + "\n";
  }
  return options.json ? out.dump(2) + "\n" : text;
}

std::string bench_sinkhorn_report(const BenchOptions& options) {
  apply_threads(options);
  const torch::Device device(options.device);
  torch::manual_seed(0);
  auto logits = torch::randn({options.tokens, options.experts}, torch::TensorOptions(device)) *
                options.logit_std;  // [T, E]
  nlohmann::json out = {{"device", options.device}, {"tokens", options.tokens},
                        {"experts", options.experts}, {"logit_std", options.logit_std}};
  std::string text = fmt::format(
      "moelab bench sinkhorn: balanced plan of T={} x E={} logits (std {}) on {}, tol 1e-4, "
      "median of {}\n",
      options.tokens, options.experts, options.logit_std, device_name(options), options.repeats);
  auto time_solver = [&](const std::string& label, SinkhornOptions solver) {
    SinkhornResult result;
    const double s = median_seconds(
        options.repeats, [&] { result = sinkhorn_balanced(logits, solver); }, device);
    out[label] = {{"ms", s * 1e3}, {"iterations", result.iterations}, {"error", result.error},
                  {"check_every", solver.check_every}};
    text += fmt::format("  {:<34} {:9.3f} ms  {:3d} iterations, column error {:.2e}\n", label,
                        s * 1e3, result.iterations, result.error);
    return s;
  };
  const SinkhornOptions defaults;
  const double ours = time_solver("moelab (check every 5)", defaults);
  SinkhornOptions every = defaults;
  every.check_every = 1;
  const double reference = time_solver("sync every iteration", every);
  for (int64_t check_every : {10, 25}) {
    SinkhornOptions sparse = defaults;
    sparse.check_every = check_every;
    time_solver(fmt::format("check every {}", check_every), sparse);
  }
  SinkhornOptions once = defaults;  // the kernels alone: every iteration, one check at the end
  once.check_every = once.max_iters;
  const double fixed = time_solver("100 iterations, one check", once);
  out["per_iteration_us"] = fixed / static_cast<double>(once.max_iters) * 1e6;
  text += fmt::format("  moelab / sync every iteration: {:.2f}x; one iteration's kernels {:.1f} us\n",
                      ours / reference, fixed / static_cast<double>(once.max_iters) * 1e6);
  return options.json ? out.dump(2) + "\n" : text;
}

namespace {

// Training seconds (`train/seconds`) of `moelab run CONFIG overrides` for `steps` steps, in a
// database of its own under `dir`.
double train_seconds(const std::string& executable, const std::string& config,
                     const std::string& overrides, const std::filesystem::path& dir,
                     int64_t steps) {
  const std::string db = (dir / fmt::format("run{}.db", steps)).string();
  const std::string command = fmt::format(
      "{} run {}/{} {} train.steps={} train.log_every={} db={} checkpoint_dir={}", executable,
      kSourceDir, config, overrides, steps, steps, db, (dir / "ckpt").string());
  const auto [output, status] = run_shell(command);
  if (status != 0) throw Error(fmt::format("bench: moelab run failed (exit {}): {}", status, output));
  Store store(db);
  for (const auto& [metric, value] : store.summaries(1)) {
    if (metric == "train/seconds") return value;
  }
  throw Error("bench: the run recorded no train/seconds");
}

// Seconds per `steps` training steps of moelab: the difference of two runs (warm-up steps,
// then warm-up + timed steps) leaves out what every run pays once: start-up, the first steps'
// allocations, evaluation, the final checkpoint.
double timed_steps_seconds(const std::string& executable, const std::string& config,
                           const std::string& overrides, int64_t warmup, int64_t steps) {
  const auto dir = std::filesystem::temp_directory_path() /
                   fmt::format("moelab-bench-train-{}", static_cast<long>(getpid()));
  std::filesystem::create_directories(dir);
  const double short_s = train_seconds(executable, config, overrides, dir, warmup);
  const double long_s = train_seconds(executable, config, overrides, dir, warmup + steps);
  std::filesystem::remove_all(dir);
  return long_s - short_s;
}

// A training-throughput comparison: `repeats` rounds, each one moelab measurement and one
// of each eager attention variant back to back, so that the machine's slow and fast minutes
// fall on both sides; medians, ranges and the per-round ratios.
struct TrainingComparison {
  std::string config;     // moelab's experiment file
  std::string overrides;  // its overrides
  std::string eager_what, eager_args;  // eager_reference.py's model and shape
  double items_per_step;               // tokens or images
  std::string unit;                    // "tokens", "images"
};

std::string compare_training(const BenchOptions& options, const std::string& executable,
                             const TrainingComparison& comparison, nlohmann::json& out) {
  const int64_t warmup = 3;
  const std::vector<std::string> variants = {"manual", "sdpa"};
  std::vector<double> ours;
  std::map<std::string, std::vector<double>> theirs, ratios;
  std::map<std::string, std::string> errors;
  std::string torch_version;
  const std::string rate_key = comparison.unit + "_per_second";
  for (int64_t round = 0; round < options.repeats; ++round) {
    const double seconds = timed_steps_seconds(executable, comparison.config,
                                               comparison.overrides, warmup, options.steps);
    ours.push_back(comparison.items_per_step * static_cast<double>(options.steps) / seconds);
    for (const auto& variant : variants) {
      if (errors.count(variant)) continue;  // a variant that cannot run here is tried once
      const nlohmann::json eager = eager_reference(
          options, comparison.eager_what,
          fmt::format("{} --steps {} --warmup {} --attention {}", comparison.eager_args,
                      options.steps, warmup, variant));
      if (!eager.contains(rate_key)) {
        errors[variant] = eager.value("error", std::string("no ") + rate_key);
        continue;
      }
      torch_version = eager["torch"].get<std::string>();
      theirs[variant].push_back(eager[rate_key].get<double>());
      ratios[variant].push_back(ours.back() / theirs[variant].back());
    }
  }
  const Spread ours_spread(ours);
  out["moelab_" + rate_key] = ours_spread.median;
  out["moelab"] = ours_spread.json();
  out["rounds"] = options.repeats;
  std::string text = fmt::format("  moelab run:            {:10.0f} {}/s ({:.0f}-{:.0f})\n",
                                 ours_spread.median, comparison.unit, ours_spread.low,
                                 ours_spread.high);
  for (const auto& variant : variants) {
    if (errors.count(variant)) {
      out["eager_" + variant] = {{"error", errors[variant]}};
      text += fmt::format("  eager PyTorch, {} attention: not run: {}\n", variant, errors[variant]);
      continue;
    }
    const Spread rate(theirs[variant]), ratio(ratios[variant]);
    out["eager_" + variant] = {{rate_key, rate.median},
                               {"rate", rate.json()}, {"ratio", ratio.json()},
                               {"torch", torch_version}};
    text += fmt::format(
        "  eager PyTorch, {:<6} attention (torch {}): {:10.0f} {}/s ({:.0f}-{:.0f}): moelab "
        "{:.2f}x (rounds {:.2f}-{:.2f})\n",
        variant, torch_version, rate.median, comparison.unit, rate.low, rate.high,
        ratio.median, ratio.low, ratio.high);
  }
  return text;
}

}  // namespace

std::string bench_lm_report(const BenchOptions& options, const std::string& executable) {
  TrainingComparison comparison;
  comparison.config = "experiments/bench_lm.yaml";
  comparison.overrides = fmt::format(
      "device={} threads={} task.data_path={}/.data/gutenberg task.seq_len={} model.dim={} "
      "model.depth={} model.heads={} model.moe.experts={} model.moe.expert_hidden={} router.k={} "
      "train.batch_size={}",
      options.device, options.threads, kSourceDir, options.seq_len, options.dim, options.depth,
      options.heads, options.experts, options.hidden, options.k, options.batch);
  comparison.eager_what = "lm";
  comparison.eager_args = fmt::format(
      "--batch {} --seq-len {} --dim {} --depth {} --heads {} --experts {} --hidden {} --k {}",
      options.batch, options.seq_len, options.dim, options.depth, options.heads, options.experts,
      options.hidden, options.k);
  comparison.items_per_step = static_cast<double>(options.batch * options.seq_len);
  comparison.unit = "tokens";
  nlohmann::json out = {{"device", options.device}, {"batch", options.batch},
                        {"seq_len", options.seq_len}, {"dim", options.dim},
                        {"depth", options.depth}, {"experts", options.experts},
                        {"expert_hidden", options.hidden}, {"k", options.k},
                        {"steps", options.steps}};
  std::string text = fmt::format(
      "moelab bench lm: char LM, batch {} x {} tokens, {} blocks of dim {} ({} heads), {} "
      "experts of hidden {}, top-{}, on {}; {} timed steps, median (range) of {} rounds\n",
      options.batch, options.seq_len, options.depth, options.dim, options.heads, options.experts,
      options.hidden, options.k, device_name(options), options.steps, options.repeats);
  text += compare_training(options, executable, comparison, out);
  return options.json ? out.dump(2) + "\n" : text;
}

std::string bench_image_report(const BenchOptions& options, const std::string& executable) {
  // The quickstart ViT as experiments/quickstart.yaml defines it (Fashion-MNIST, 28 x 28, 7 x 7
  // patches, 4 blocks of dim 64 with 4 heads, 8 experts of hidden 128, top-2, batch 128).
  const int64_t batch = 128;
  TrainingComparison comparison;
  comparison.config = "experiments/quickstart.yaml";
  comparison.overrides = fmt::format("device={} threads={}", options.device, options.threads);
  comparison.eager_what = "image";
  comparison.eager_args = fmt::format(
      "--batch {} --side 28 --patch 7 --classes 10 --dim 64 --depth 4 --heads 4 --experts 8 "
      "--hidden 128 --k 2",
      batch);
  comparison.items_per_step = static_cast<double>(batch);
  comparison.unit = "images";
  nlohmann::json out = {{"device", options.device}, {"batch", batch}, {"steps", options.steps}};
  std::string text = fmt::format(
      "moelab bench image: the quickstart ViT (28 x 28, 7 x 7 patches, 4 blocks of dim 64, 8 "
      "experts of hidden 128, top-2), batch {}, on {}; {} timed steps, median (range) of {} "
      "rounds\n",
      batch, device_name(options), options.steps, options.repeats);
  text += compare_training(options, executable, comparison, out);
  return options.json ? out.dump(2) + "\n" : text;
}

}  // namespace moelab
