// The routing probe: specialisation, collapse and fluctuation measures, and routing traces.
#include "harness/train/routing_probe.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <optional>
#include <regex>

#include "harness/core/npy.h"
#include "harness/model/precision.h"
#include "harness/model/routing_diagnostics.h"

namespace moelab {
namespace {

namespace fs = std::filesystem;

std::string trace_file(const std::string& dir, int64_t step, int64_t layer, const char* part) {
  return fmt::format("{}/step{}.l{}.{}.npy", dir, step, layer, part);
}

std::string labels_file(const std::string& dir) { return dir + "/labels.npy"; }

// The step of a trace file's name ("step120.l0.experts.npy"), if it is one.
std::optional<int64_t> traced_step(const fs::path& file) {
  static const std::regex pattern(R"(step(\d+)\.l\d+\.(experts|gates)\.npy)");
  std::smatch match;
  const std::string name = file.filename().string();
  if (!std::regex_match(name, match, pattern)) return std::nullopt;
  return std::stoll(match[1].str());
}

// Written under a temporary name and renamed: a reader never sees half a file.
void write_whole(const std::string& path, const torch::Tensor& tensor) {
  const std::string partial = path + ".partial";
  write_npy(partial, tensor);
  fs::rename(partial, path);
}

// Adds "moe/l<block>/<name>" for each measured layer and the mean "moe/<name>".
void add_layer_rows(const std::string& name, const std::vector<std::pair<int64_t, double>>& values,
                    MetricValues& rows) {
  if (values.empty()) return;
  double sum = 0;
  for (const auto& [block, value] : values) {
    rows.emplace_back(fmt::format("moe/l{}/{}", block, name), value);
    sum += value;
  }
  rows.emplace_back("moe/" + name, sum / static_cast<double>(values.size()));
}

// NMI of the experts chosen against the labels of the tokens that chose them, over the
// assignments (a token with k experts counts k times).
std::optional<double> specialisation(const LayerProbe& probe, const torch::Tensor& labels) {
  if (!probe.token.defined() || probe.token.numel() == 0) return std::nullopt;
  const auto label = labels.index_select(0, probe.token.to(torch::kCPU));  // [A]
  const int64_t classes = labels.max().item<int64_t>() + 1;
  const auto cell = probe.expert.to(torch::kCPU) * classes + label;       // [A]
  const auto counts = torch::bincount(cell, {}, probe.choices * classes)
                          .view({probe.choices, classes});                // [C, Y]
  return normalized_mutual_information(counts);
}

}  // namespace

std::string trace_dir(const std::string& checkpoint_dir, const std::string& config_hash) {
  return fmt::format("{}/{}.trace", checkpoint_dir, config_hash);
}

LayerTrace read_layer_trace(const std::string& dir, int64_t step, int64_t layer) {
  LayerTrace trace;
  trace.experts = read_npy_rows(trace_file(dir, step, layer, "experts"), 0,
                                read_npy_header(trace_file(dir, step, layer, "experts")).shape.at(0))
                      .to(torch::kLong);
  trace.gates = read_npy_float32(trace_file(dir, step, layer, "gates"));
  trace.labels = read_npy_rows(labels_file(dir), 0, read_npy_header(labels_file(dir)).shape.at(0))
                     .to(torch::kLong);
  if (trace.gates.sizes() != trace.experts.sizes() || trace.labels.size(0) != trace.experts.size(0)) {
    throw ConfigError(fmt::format("trace '{}' step {} layer {}: experts {}, gates {} and labels "
                                  "{} do not match",
                                  dir, step, layer, fmt::join(trace.experts.sizes(), "x"),
                                  fmt::join(trace.gates.sizes(), "x"), trace.labels.size(0)));
  }
  return trace;
}

RoutingProbe::RoutingProbe(const RunSpec& run, Task& task, MetricLog& log, torch::Device device)
    : config_(run.config),
      log_(log),
      device_(device),
      trace_every_(run.config.train.trace_every),
      dir_(trace_dir(run.config.checkpoint_dir, run.hash)) {
  if (config_.eval.probe_examples > 0) batch_ = task.probe_batch(config_.eval.probe_examples);
}

void RoutingProbe::start(bool resuming, int64_t resumed_step) {
  if (!resuming) {
    fs::remove_all(dir_);
    return;
  }
  if (!fs::exists(dir_)) return;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const auto step = traced_step(entry.path());
    if (step && *step > resumed_step) fs::remove(entry.path());
  }
}

std::optional<int64_t> RoutingProbe::last_traced_before(int64_t step) const {
  std::optional<int64_t> last;
  if (!fs::exists(dir_)) return last;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const auto traced = traced_step(entry.path());
    if (traced && *traced < step && (!last || *traced > *last)) last = traced;
  }
  return last;
}

torch::Tensor RoutingProbe::token_labels(int64_t tokens) const {
  const auto targets = batch_.target.reshape({-1}).to(torch::kLong);  // [N]
  const int64_t predictions = targets.numel();
  MOELAB_CHECK(predictions > 0 && tokens % predictions == 0,
               "routing probe: {} tokens for {} predictions", tokens, predictions);
  return targets.repeat_interleave(tokens / predictions);  // [T]
}

MetricValues RoutingProbe::measure(TaskModel& model, int64_t step) {
  MetricValues rows;
  if (config_.eval.probe_examples == 0) return rows;
  RoutingRecord record;
  {
    model.eval();
    torch::NoGradGuard no_grad;
    RouteContext ctx;
    ctx.seed = config_.seed;
    ctx.step = step;
    ctx.record = &record;
    ctx.probe = true;
    Batch batch{batch_.input.to(device_), batch_.target.to(device_)};
    AutocastGuard autocast(parse_precision(config_.train.precision), device_);
    model.predict(batch, ctx);
    model.train();
  }
  std::vector<std::pair<int64_t, double>> nmi, cosine, fluctuation, traced;
  const int64_t previous = tracing() ? last_traced_before(step).value_or(-1) : -1;  // -1: none
  // Every MoE layer routes the same T tokens: one label per token for all of them.
  const auto labels = record.probes.empty() ? torch::Tensor() : token_labels(record.probes.front().tokens);
  for (const auto& probe : record.probes) {
    if (const auto value = specialisation(probe, labels)) nmi.emplace_back(probe.layer, *value);
    if (probe.expert_cosine.defined()) {
      cosine.emplace_back(probe.layer, probe.expert_cosine.item<double>());
    }
    if (!tracing() || !probe.token.defined()) continue;
    const auto experts = selected_sets(probe.token, probe.expert, probe.tokens);  // [T, S]
    if (previous >= 0 && fs::exists(trace_file(dir_, previous, probe.layer, "experts"))) {
      const auto before = read_layer_trace(dir_, previous, probe.layer).experts;
      fluctuation.emplace_back(probe.layer, changed_share(before, experts).item<double>());
    }
    fs::create_directories(dir_);
    if (!fs::exists(labels_file(dir_))) write_whole(labels_file(dir_), labels);
    write_trace(step, probe, experts);
    traced.emplace_back(probe.layer, static_cast<double>(probe.tokens));
  }
  add_layer_rows("spec_nmi", nmi, rows);
  add_layer_rows("expert_cosine", cosine, rows);
  add_layer_rows("routing_fluctuation", fluctuation, rows);
  for (const auto& [block, tokens] : traced) rows.emplace_back(fmt::format("moe/l{}/trace_tokens", block), tokens);
  for (const auto& [name, value] : rows) log_.add(step, "probe", name, value);
  log_.flush();
  MetricValues summaries;
  for (const auto& [name, value] : rows) summaries.emplace_back("probe/" + name, value);
  return summaries;
}

void RoutingProbe::write_trace(int64_t step, const LayerProbe& probe, const torch::Tensor& experts) {
  // The dense gate table [T, C], read at each selected expert.
  auto dense = torch::zeros({probe.tokens, probe.choices})
                   .index_put_({probe.token.to(torch::kCPU), probe.expert.to(torch::kCPU)},
                               probe.weight.to(torch::kCPU), /*accumulate=*/true);
  const auto selected = experts.ge(0);
  const auto gates = dense.gather(1, experts.clamp_min(0)).masked_fill(selected.logical_not(), 0.0);
  write_whole(trace_file(dir_, step, probe.layer, "gates"), gates.to(torch::kFloat));
  write_whole(trace_file(dir_, step, probe.layer, "experts"), experts.to(torch::kShort));
}

}  // namespace moelab
