// `moelab bench lm | image`: training throughput of `moelab run` (a child process, started
// without a shell) against the same model trained in eager PyTorch, in alternating rounds;
// `moelab bench trace`: the quickstart ViT's training with routing traces against without.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>

#include "harness/cli/bench.h"
#include "harness/config/config.h"
#include "harness/core/build_info.h"
#include "harness/core/error.h"
#include "harness/core/subprocess.h"
#include "harness/store/store.h"

namespace moelab {
namespace {

constexpr int64_t kWarmupSteps = 3;
const char* const kAttentionVariants[] = {"manual", "sdpa"};

// The quickstart ViT as experiments/quickstart.yaml defines it (Fashion-MNIST).
struct QuickstartVit {
  int64_t batch = 128, side = 28, patch = 7, classes = 10;
  int64_t dim = 64, depth = 4, heads = 4, experts = 8, hidden = 128, k = 2;
};

// Training seconds (`train/seconds`) of `moelab run CONFIG overrides` for `steps` steps, in a
// database of its own under `dir`.
double train_seconds(const std::string& executable, const std::string& config,
                     const std::vector<std::string>& overrides, const std::filesystem::path& dir,
                     int64_t steps) {
  const std::string db = (dir / fmt::format("run{}.db", steps)).string();
  std::vector<std::string> argv = {executable, "run", std::string(kSourceDir) + "/" + config};
  argv.insert(argv.end(), overrides.begin(), overrides.end());
  argv.insert(argv.end(), {fmt::format("train.steps={}", steps),
                           fmt::format("train.log_every={}", steps), "db=" + db,
                           "checkpoint_dir=" + (dir / "ckpt").string()});
  const CommandResult result = run_command(argv);
  if (result.exit_code != 0) {
    throw Error(fmt::format("bench: {} failed (exit {}): {}", fmt::join(argv, " "),
                            result.exit_code, result.output));
  }
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
                           const std::vector<std::string>& overrides, int64_t steps) {
  const ScratchDir dir("moelab-bench-train");
  const double short_s = train_seconds(executable, config, overrides, dir.path(), kWarmupSteps);
  const double long_s =
      train_seconds(executable, config, overrides, dir.path(), kWarmupSteps + steps);
  return long_s - short_s;
}

// A training-throughput comparison: moelab's experiment and eager_reference.py's model.
struct TrainingComparison {
  std::string config;                   // moelab's experiment file, under the source folder
  std::vector<std::string> overrides;   // its overrides
  std::string eager_what;               // eager_reference.py's model
  std::vector<std::string> eager_args;  // and shape
  double items_per_step = 0;            // tokens or images
  std::string unit;                     // "tokens", "images"
};

// One eager attention variant over the rounds: its rates and moelab's ratios to them, or why
// it did not run (a variant that cannot run here is tried once).
struct EagerSeries {
  std::vector<double> rates, ratios;
  std::string torch, error;
};

// {"error"} or the rate's median under `rate_key`, the rate's and the ratio's spreads, torch.
nlohmann::json series_json(const EagerSeries& series, const std::string& rate_key) {
  if (!series.error.empty()) return {{"error", series.error}};
  const nlohmann::json rate = spread(series.rates);
  return {{rate_key, rate["median"]}, {"rate", rate},
          {"ratio", spread(series.ratios)}, {"torch", series.torch}};
}

// `repeats` rounds, each one moelab measurement and one of each eager attention variant back
// to back, so that the machine's slow and fast minutes fall on both sides. Adds to `out`
// "moelab" and "eager_VARIANT" (medians, ranges, per-round ratios), "moelab_UNIT_per_second",
// "rounds".
void compare_training(const BenchOptions& options, const std::string& executable,
                      const TrainingComparison& comparison, nlohmann::json& out) {
  const std::string rate_key = comparison.unit + "_per_second";
  std::vector<double> ours;
  std::map<std::string, EagerSeries> eager;
  for (int64_t round = 0; round < options.repeats; ++round) {
    const double seconds =
        timed_steps_seconds(executable, comparison.config, comparison.overrides, options.steps);
    ours.push_back(comparison.items_per_step * static_cast<double>(options.steps) / seconds);
    for (const char* variant : kAttentionVariants) {
      EagerSeries& series = eager[variant];
      if (!series.error.empty()) continue;
      std::vector<std::string> args = comparison.eager_args;
      args.insert(args.end(), {"--steps", std::to_string(options.steps), "--warmup",
                               std::to_string(kWarmupSteps), "--attention", variant});
      const nlohmann::json reference = eager_reference(options, comparison.eager_what, args);
      if (!reference.contains(rate_key)) {
        series.error = reference.value("error", "no " + rate_key);
        continue;
      }
      series.torch = reference["torch"].get<std::string>();
      series.rates.push_back(reference[rate_key].get<double>());
      series.ratios.push_back(ours.back() / series.rates.back());
    }
  }
  out["moelab"] = spread(ours);
  out["moelab_" + rate_key] = out["moelab"]["median"];
  out["rounds"] = options.repeats;
  for (const char* variant : kAttentionVariants) {
    out[std::string("eager_") + variant] = series_json(eager[variant], rate_key);
  }
}

// The lines of compare_training's figures, `unit` "tokens" or "images".
std::string render_comparison(const nlohmann::json& result, const std::string& unit) {
  const nlohmann::json& ours = result["moelab"];
  std::string text = fmt::format("  moelab run:            {:10.0f} {}/s ({:.0f}-{:.0f})\n",
                                 ours["median"].get<double>(), unit, ours["min"].get<double>(),
                                 ours["max"].get<double>());
  for (const char* variant : kAttentionVariants) {
    const nlohmann::json& eager = result[std::string("eager_") + variant];
    if (eager.contains("error")) {
      text += fmt::format("  eager PyTorch, {} attention: not run: {}\n", variant,
                          eager["error"].get<std::string>());
      continue;
    }
    const nlohmann::json &rate = eager["rate"], &ratio = eager["ratio"];
    text += fmt::format(
        "  eager PyTorch, {:<6} attention (torch {}): {:10.0f} {}/s ({:.0f}-{:.0f}): moelab "
        "{:.2f}x (rounds {:.2f}-{:.2f})\n",
        variant, eager["torch"].get<std::string>(), rate["median"].get<double>(), unit,
        rate["min"].get<double>(), rate["max"].get<double>(), ratio["median"].get<double>(),
        ratio["min"].get<double>(), ratio["max"].get<double>());
  }
  return text;
}

}  // namespace

nlohmann::json measure_lm(const BenchOptions& options, const std::string& executable) {
  TrainingComparison comparison;
  comparison.config = "experiments/bench_lm.yaml";
  comparison.overrides = {
      "device=" + options.device,
      fmt::format("threads={}", options.threads),
      fmt::format("task.data_path={}/.data/gutenberg", kSourceDir),
      fmt::format("task.seq_len={}", options.seq_len),
      fmt::format("model.dim={}", options.dim),
      fmt::format("model.depth={}", options.depth),
      fmt::format("model.heads={}", options.heads),
      fmt::format("model.moe.experts={}", options.experts),
      fmt::format("model.moe.expert_hidden={}", options.hidden),
      fmt::format("router.k={}", options.k),
      fmt::format("train.batch_size={}", options.batch)};
  comparison.eager_what = "lm";
  comparison.eager_args = flag_args(
      {{"--batch", options.batch}, {"--seq-len", options.seq_len}, {"--dim", options.dim},
       {"--depth", options.depth}, {"--heads", options.heads}, {"--experts", options.experts},
       {"--hidden", options.hidden}, {"--k", options.k}});
  comparison.items_per_step = static_cast<double>(options.batch * options.seq_len);
  comparison.unit = "tokens";
  nlohmann::json out = {{"device", options.device},     {"threads", options.threads},
                        {"batch", options.batch},       {"seq_len", options.seq_len},
                        {"dim", options.dim},           {"depth", options.depth},
                        {"heads", options.heads},       {"experts", options.experts},
                        {"expert_hidden", options.hidden}, {"k", options.k},
                        {"steps", options.steps}};
  compare_training(options, executable, comparison, out);
  return out;
}

std::string render_lm(const nlohmann::json& result) {
  return fmt::format(
             "moelab bench lm: char LM, batch {} x {} tokens, {} blocks of dim {} ({} heads), {} "
             "experts of hidden {}, top-{}, on {}; {} timed steps, median (range) of {} rounds\n",
             result["batch"].get<int64_t>(), result["seq_len"].get<int64_t>(),
             result["depth"].get<int64_t>(), result["dim"].get<int64_t>(),
             result["heads"].get<int64_t>(), result["experts"].get<int64_t>(),
             result["expert_hidden"].get<int64_t>(), result["k"].get<int64_t>(),
             device_text(result), result["steps"].get<int64_t>(),
             result["rounds"].get<int64_t>()) +
         render_comparison(result, "tokens");
}

nlohmann::json measure_image(const BenchOptions& options, const std::string& executable) {
  const QuickstartVit vit;
  TrainingComparison comparison;
  comparison.config = "experiments/quickstart.yaml";
  comparison.overrides = {"device=" + options.device, fmt::format("threads={}", options.threads)};
  comparison.eager_what = "image";
  comparison.eager_args = flag_args(
      {{"--batch", vit.batch}, {"--side", vit.side}, {"--patch", vit.patch},
       {"--classes", vit.classes}, {"--dim", vit.dim}, {"--depth", vit.depth},
       {"--heads", vit.heads}, {"--experts", vit.experts}, {"--hidden", vit.hidden},
       {"--k", vit.k}});
  comparison.items_per_step = static_cast<double>(vit.batch);
  comparison.unit = "images";
  nlohmann::json out = {{"device", options.device}, {"threads", options.threads},
                        {"batch", vit.batch},       {"side", vit.side},
                        {"patch", vit.patch},       {"classes", vit.classes},
                        {"dim", vit.dim},           {"depth", vit.depth},
                        {"heads", vit.heads},       {"experts", vit.experts},
                        {"expert_hidden", vit.hidden}, {"k", vit.k},
                        {"steps", options.steps}};
  compare_training(options, executable, comparison, out);
  return out;
}

std::string render_image(const nlohmann::json& result) {
  const auto side = result["side"].get<int64_t>(), patch = result["patch"].get<int64_t>();
  return fmt::format(
             "moelab bench image: the quickstart ViT ({} x {}, {} x {} patches, {} blocks of dim "
             "{}, {} experts of hidden {}, top-{}), batch {}, on {}; {} timed steps, median "
             "(range) of {} rounds\n",
             side, side, patch, patch, result["depth"].get<int64_t>(),
             result["dim"].get<int64_t>(), result["experts"].get<int64_t>(),
             result["expert_hidden"].get<int64_t>(), result["k"].get<int64_t>(),
             result["batch"].get<int64_t>(), device_text(result), result["steps"].get<int64_t>(),
             result["rounds"].get<int64_t>()) +
         render_comparison(result, "images");
}

nlohmann::json measure_trace(const BenchOptions& options, const std::string& executable) {
  const int64_t every = std::max<int64_t>(1, options.steps / 4);  // four traces in the timed steps
  const std::vector<std::string> base = {"device=" + options.device,
                                         fmt::format("threads={}", options.threads)};
  std::vector<std::string> traced = base;
  traced.push_back(fmt::format("train.trace_every={}", every));
  std::vector<double> plain_s, traced_s, ratios;
  for (int64_t round = 0; round < options.repeats; ++round) {  // alternating rounds
    plain_s.push_back(timed_steps_seconds(executable, "experiments/quickstart.yaml", base, options.steps));
    traced_s.push_back(timed_steps_seconds(executable, "experiments/quickstart.yaml", traced, options.steps));
    ratios.push_back(traced_s.back() / plain_s.back());
  }
  return {{"device", options.device}, {"threads", options.threads}, {"steps", options.steps},
          {"trace_every", every},     {"probe_examples", EvalConfig{}.probe_examples},         {"rounds", options.repeats},
          {"plain_seconds", spread(plain_s)}, {"traced_seconds", spread(traced_s)},
          {"ratio", spread(ratios)}};
}

std::string render_trace(const nlohmann::json& result) {
  const auto& ratio = result["ratio"];
  return fmt::format(
      "moelab bench trace: the quickstart ViT on {}, {} timed steps, traced every {} ({} probe "
      "images, 4 MoE layers); median (range) of {} alternating rounds\n"
      "  without traces  {}\n  with traces     {}\n"
      "  ratio           {:.3f} ({:.3f}-{:.3f}) per round: traced over untraced training "
      "time, {:+.1f}%\n",
      device_text(result), result["steps"].get<int64_t>(), result["trace_every"].get<int64_t>(),
      result["probe_examples"].get<int64_t>(), result["rounds"].get<int64_t>(),
      spread_text(result["plain_seconds"], 1.0, "s"), spread_text(result["traced_seconds"], 1.0, "s"),
      ratio["median"].get<double>(), ratio["min"].get<double>(), ratio["max"].get<double>(),
      100 * (ratio["median"].get<double>() - 1));
}

}  // namespace moelab
