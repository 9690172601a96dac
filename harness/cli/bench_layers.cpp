// `moelab bench matmul | routers | moe | sinkhorn`: in-process measurements of the BLAS, the
// routers, one MoE layer and the Sinkhorn solver (medians over repeats of wall time).
#include <fmt/format.h>

#include "harness/cli/bench.h"
#include "harness/config/config.h"
#include "harness/core/blas.h"
#include "harness/model/moe_layer.h"
#include "harness/train/provenance.h"
#include "routers/registry.h"
#include "routers/sinkhorn.h"

namespace moelab {
namespace {

// options.threads LibTorch threads, 1 OpenBLAS thread, as a run sets them.
void apply_threads(const BenchOptions& options) {
  RunConfig config;
  config.threads = options.threads;
  config.blas_threads = 1;
  apply_thread_settings(config);
}

// A run config of `router` at options' layer shape, with `extra` overrides.
RunConfig bench_config(const BenchOptions& options, const std::string& router,
                       const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {
      "router.name=" + router, fmt::format("model.dim={}", options.dim),
      fmt::format("model.moe.experts={}", options.experts),
      fmt::format("model.moe.expert_hidden={}", options.hidden)};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return parse_run_config("", "bench", overrides);
}

// "router.k=K" of options.k.
std::string k_override(const BenchOptions& options) {
  return fmt::format("router.k={}", options.k);
}

// One MoE layer: forward + backward per call, training mode, step counter advancing.
struct LayerBench {
  MoELayer layer{nullptr};
  torch::Tensor x;  // [T, d], requires grad
  int64_t step = 0;
  void run_step() {
    RouteContext ctx;
    ctx.training = true;
    ctx.step = ++step;
    ctx.group_size = 256;
    RoutingRecord record;
    ctx.record = &record;
    auto y = layer(x, ctx);  // [T, d]
    (y.pow(2).mean() + record.total_aux_loss(y.device())).backward();
  }
};

// config's MoE layer on options.device, with a [T, d] input (seed 0).
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

// Median forward+backward of a dense FFN with the MoE layer's active FLOPs (hidden k*H) on
// options.device.
double dense_step_seconds(const BenchOptions& options) {
  const torch::Device device(options.device);
  torch::manual_seed(0);
  auto dense = torch::nn::Sequential(torch::nn::Linear(options.dim, options.k * options.hidden),
                                     torch::nn::GELU(),
                                     torch::nn::Linear(options.k * options.hidden, options.dim));
  dense->to(device);
  auto x = torch::randn({options.tokens, options.dim},
                        torch::TensorOptions(device).requires_grad(true));  // [T, d]
  return median_seconds(
      options.repeats, [&] { dense->forward(x).pow(2).mean().backward(); }, options.device);
}

// "dense_ffn_step_ms", "moe_topk_step_ms" and their ratio "moe_over_dense".
void time_moe_against_dense(const BenchOptions& options, LayerBench& topk, nlohmann::json& out) {
  const double dense_s = dense_step_seconds(options);
  const double moe_s = median_seconds(options.repeats, [&] { topk.run_step(); }, options.device);
  out["dense_ffn_step_ms"] = dense_s * 1e3;
  out["moe_topk_step_ms"] = moe_s * 1e3;
  out["moe_over_dense"] = moe_s / dense_s;
}

// Each registered router's decision (training mode, forward only) and, beside it, the MoE
// layer's training step with that router: "routers" (registry order), "decision_ms" and
// "layer_step_ms" by router.
void time_routers(const BenchOptions& options, nlohmann::json& out) {
  torch::manual_seed(0);
  auto x = torch::randn({options.tokens, options.dim});  // [T, d]
  out["routers"] = nlohmann::json::array();
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
    out["routers"].push_back(entry.name);
    out["decision_ms"][entry.name] = decision_s * 1e3;
    out["layer_step_ms"][entry.name] = step_s * 1e3;
  }
}

// SSR at p = 0.01 against top-k, and S-BASE (Sinkhorn every step) against top-k at k = 1, in
// interleaved blocks of training steps: "paired_step_ms" and the ratios.
void time_against_topk(const BenchOptions& options, LayerBench& topk, nlohmann::json& out) {
  LayerBench ssr = make_layer_bench(
      options, bench_config(options, "ssr", {k_override(options), "router.p=0.01"}));
  auto [topk_s, ssr_s] = paired_step_seconds(topk, ssr, options.repeats * 4, 10);
  LayerBench topk1 = make_layer_bench(options, bench_config(options, "topk", {"router.k=1"}));
  LayerBench sbase = make_layer_bench(options, bench_config(options, "sbase", {"router.k=1"}));
  auto [topk1_s, sbase_s] = paired_step_seconds(topk1, sbase, options.repeats, 4);
  LayerBench dense = make_layer_bench(
      options, bench_config(options, "topk", {k_override(options), "model.moe.router_grad=dense"}));
  auto [sparse_s, dense_s] = paired_step_seconds(topk, dense, options.repeats, 4);
  out["paired_step_ms"] = {{"topk", topk_s * 1e3}, {"ssr_p0.01", ssr_s * 1e3},
                           {"topk_k1", topk1_s * 1e3}, {"sbase_k1", sbase_s * 1e3},
                           {"topk_sparse_grad", sparse_s * 1e3}, {"topk_dense_grad", dense_s * 1e3}};
  out["ssr_p0.01_over_topk"] = ssr_s / topk_s;
  out["sbase_over_topk_k1"] = sbase_s / topk1_s;
  out["dense_grad_over_sparse"] = dense_s / sparse_s;
}

// The solvers `bench sinkhorn` times, in its report's order: label (a key of its JSON) and how
// often each checks its error (a host sync).
std::vector<std::pair<std::string, int64_t>> sinkhorn_variants() {
  const SinkhornOptions defaults;
  return {{fmt::format("moelab (check every {})", defaults.check_every), defaults.check_every},
          {"sync every iteration", 1},
          {"check every 10", 10},
          {"check every 25", 25},
          {fmt::format("{} iterations, one check", defaults.max_iters), defaults.max_iters}};
}

}  // namespace

nlohmann::json measure_matmul(const BenchOptions& options, const std::string& /*executable*/) {
  apply_threads(options);
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  const double s = median_seconds(options.repeats * 4, [&] { a.mm(b); });
  const std::string core = openblas_core();
  return {{"matmul_1024_gflops", 2.0 * 1024 * 1024 * 1024 / s / 1e9},
          {"blas", blas_description()},
          {"blas_core", core},
          {"better_blas_core", core.empty() ? "" : better_openblas_core(cpu_features(), core)},
          {"threads", options.threads},
          {"blas_threads", 1}};
}

std::string render_matmul(const nlohmann::json& result) {
  const std::string core = result["blas_core"].get<std::string>();
  const std::string better = result["better_blas_core"].get<std::string>();
  std::string hint;
  if (core.empty()) {
    hint = "\n  <- not OpenBLAS: the reference BLAS is ~25x slower; harness/scripts/setup.sh "
           "makes OpenBLAS the system BLAS";
  } else if (!better.empty()) {
    hint = fmt::format("\n  <- OpenBLAS runs its {} kernels on a CPU with wider vectors "
                       "(OPENBLAS_CORETYPE={} is what moelab chooses unless you set one)",
                       core, better);
  }
  return fmt::format("BLAS: {}\nmatmul 1024x1024x1024 fp32: {:.1f} GFLOP/s ({} LibTorch threads, "
                     "{} BLAS thread, core {}){}\n",
                     result["blas"].get<std::string>(), result["matmul_1024_gflops"].get<double>(),
                     result["threads"].get<int64_t>(), result["blas_threads"].get<int64_t>(),
                     core.empty() ? "-" : core, hint);
}

nlohmann::json measure_routers(const BenchOptions& options, const std::string& /*executable*/) {
  apply_threads(options);
  nlohmann::json out;
  out["shape"] = {{"tokens", options.tokens}, {"dim", options.dim}, {"hidden", options.hidden},
                  {"experts", options.experts}, {"k", options.k}, {"threads", options.threads}};
  out["repeats"] = options.repeats;
  time_routers(options, out);
  LayerBench topk = make_layer_bench(options, bench_config(options, "topk", {k_override(options)}));
  time_moe_against_dense(options, topk, out);
  time_against_topk(options, topk, out);
  return out;
}

std::string render_routers(const nlohmann::json& result) {
  const nlohmann::json& shape = result["shape"];
  const auto k = shape["k"].get<int64_t>(), hidden = shape["hidden"].get<int64_t>();
  std::string text = fmt::format(
      "moelab bench routers: T={} d={} hidden={} E={} k={}, {} LibTorch threads, median of {}\n\n",
      shape["tokens"].get<int64_t>(), shape["dim"].get<int64_t>(), hidden,
      shape["experts"].get<int64_t>(), k, shape["threads"].get<int64_t>(),
      result["repeats"].get<int64_t>());
  text += fmt::format("{:<14} {:>12} {:>16}\n", "router", "decision ms", "layer step ms");
  for (const auto& name : result["routers"]) {
    const std::string router = name.get<std::string>();
    text += fmt::format("{:<14} {:>12.2f} {:>16.2f}\n", router,
                        result["decision_ms"][router].get<double>(),
                        result["layer_step_ms"][router].get<double>());
  }
  const nlohmann::json& paired = result["paired_step_ms"];
  const double ssr = paired["ssr_p0.01"].get<double>(), topk = paired["topk"].get<double>();
  const double sbase = paired["sbase_k1"].get<double>(), topk1 = paired["topk_k1"].get<double>();
  text += fmt::format("\nforward+backward, one layer\n  dense FFN (hidden {}): {:.1f} ms\n"
                      "  MoE, topk:           {:.1f} ms   ratio {:.2f}x (target <= 1.5x)\n",
                      k * hidden, result["dense_ffn_step_ms"].get<double>(),
                      result["moe_topk_step_ms"].get<double>(),
                      result["moe_over_dense"].get<double>());
  text += fmt::format(
      "  ssr p=0.01 vs topk:  {:.1f} ms vs {:.1f} ms per step, {:+.1f}% (target within 3%)\n"
      "  sbase vs topk (k=1): {:.1f} ms vs {:.1f} ms per step, {:+.1f}% (Sinkhorn every step)\n",
      ssr, topk, 100 * (result["ssr_p0.01_over_topk"].get<double>() - 1), sbase, topk1,
      100 * (result["sbase_over_topk_k1"].get<double>() - 1));
  text += fmt::format("  topk, router_grad dense vs sparse: {:.1f} ms vs {:.1f} ms per step, {:+.1f}% "
                      "(every expert on every token)\n",
                      paired["topk_dense_grad"].get<double>(), paired["topk_sparse_grad"].get<double>(),
                      100 * (result["dense_grad_over_sparse"].get<double>() - 1));
  return text;
}

nlohmann::json measure_moe(const BenchOptions& options, const std::string& /*executable*/) {
  apply_threads(options);
  LayerBench topk = make_layer_bench(options, bench_config(options, "topk", {k_override(options)}));
  nlohmann::json out = {{"device", options.device},   {"threads", options.threads},
                        {"tokens", options.tokens},   {"dim", options.dim},
                        {"hidden", options.hidden},   {"experts", options.experts},
                        {"k", options.k},             {"repeats", options.repeats}};
  time_moe_against_dense(options, topk, out);
  out["eager"] = eager_reference(
      options, "moe",
      flag_args({{"--repeats", options.repeats}, {"--tokens", options.tokens},
                 {"--dim", options.dim}, {"--hidden", options.hidden},
                 {"--experts", options.experts}, {"--k", options.k}}));
  if (out["eager"].contains("eager_loop_step_ms")) {
    out["eager_loop_over_moe"] =
        out["eager"]["eager_loop_step_ms"].get<double>() / out["moe_topk_step_ms"].get<double>();
  }
  return out;
}

std::string render_moe(const nlohmann::json& result) {
  const double moe_ms = result["moe_topk_step_ms"].get<double>();
  std::string text = fmt::format(
      "moelab bench moe: T={} d={} hidden={} E={} k={} on {}, forward+backward, median of {}\n"
      "  dense FFN (hidden {}):   {:9.3f} ms\n"
      "  moelab MoE layer, topk:  {:9.3f} ms   {:.2f}x the dense FFN\n",
      result["tokens"].get<int64_t>(), result["dim"].get<int64_t>(),
      result["hidden"].get<int64_t>(), result["experts"].get<int64_t>(),
      result["k"].get<int64_t>(), device_text(result), result["repeats"].get<int64_t>(),
      result["k"].get<int64_t>() * result["hidden"].get<int64_t>(),
      result["dense_ffn_step_ms"].get<double>(), moe_ms, result["moe_over_dense"].get<double>());
  const nlohmann::json& eager = result["eager"];
  if (!result.contains("eager_loop_over_moe")) {
    return text + "  eager PyTorch reference not run: " +
           eager.value("error", "its output has no eager_loop_step_ms") + "\n";
  }
  return text + fmt::format(
                    "  eager PyTorch loop over experts (torch {}): {:.3f} ms: moelab is {:.2f}x "
                    "faster\n  eager PyTorch dense FFN: {:.3f} ms\n",
                    eager["torch"].get<std::string>(), eager["eager_loop_step_ms"].get<double>(),
                    result["eager_loop_over_moe"].get<double>(),
                    eager["dense_ffn_step_ms"].get<double>());
}

nlohmann::json measure_sinkhorn(const BenchOptions& options, const std::string& /*executable*/) {
  apply_threads(options);
  torch::manual_seed(0);
  auto logits = torch::randn({options.tokens, options.experts},
                             torch::TensorOptions(torch::Device(options.device))) *
                options.logit_std;  // [T, E]
  const SinkhornOptions defaults;
  nlohmann::json out = {{"device", options.device},   {"threads", options.threads},
                        {"tokens", options.tokens},   {"experts", options.experts},
                        {"logit_std", options.logit_std}, {"tol", defaults.tol},
                        {"repeats", options.repeats}};
  for (const auto& [label, check_every] : sinkhorn_variants()) {
    SinkhornOptions solver = defaults;
    solver.check_every = check_every;
    SinkhornResult result;
    const double s = median_seconds(
        options.repeats, [&] { result = sinkhorn_balanced(logits, solver); }, options.device);
    out[label] = {{"ms", s * 1e3}, {"iterations", result.iterations}, {"error", result.error},
                  {"check_every", check_every}};
  }
  // The kernels alone: the last variant runs every iteration and checks once at the end.
  out["per_iteration_us"] = out[sinkhorn_variants().back().first]["ms"].get<double>() * 1e3 /
                            static_cast<double>(defaults.max_iters);
  return out;
}

std::string render_sinkhorn(const nlohmann::json& result) {
  std::string text = fmt::format(
      "moelab bench sinkhorn: balanced plan of T={} x E={} logits (std {}) on {}, tol {:g}, "
      "median of {}\n",
      result["tokens"].get<int64_t>(), result["experts"].get<int64_t>(),
      result["logit_std"].get<double>(), device_text(result), result["tol"].get<double>(),
      result["repeats"].get<int64_t>());
  const auto variants = sinkhorn_variants();
  for (const auto& variant : variants) {
    const nlohmann::json& solver = result[variant.first];
    text += fmt::format("  {:<34} {:9.3f} ms  {:3d} iterations, column error {:.2e}\n",
                        variant.first, solver["ms"].get<double>(),
                        solver["iterations"].get<int64_t>(), solver["error"].get<double>());
  }
  const double moelab_ms = result[variants[0].first]["ms"].get<double>();
  const double sync_ms = result[variants[1].first]["ms"].get<double>();
  text += fmt::format(
      "  moelab / sync every iteration: {:.2f}x; one iteration's kernels {:.1f} us\n",
      moelab_ms / sync_ms, result["per_iteration_us"].get<double>());
  return text;
}

}  // namespace moelab
