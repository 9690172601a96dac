// `moelab trace DB --run ID --layer L [--step S] [--format text|csv|npy]`: the routing traces
// a run recorded (train.trace_every; harness/train/routing_probe.h), printed or exported.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/core/npy.h"
#include "harness/store/store.h"
#include "harness/train/routing_probe.h"

namespace moelab {
namespace {

struct TraceRequest {
  std::string db;
  int64_t run = 0;
  int64_t layer = 0;
  int64_t step = -1;  // -1: the last traced step
  std::string format = "text";
  std::string output;
  std::string checkpoint_dir;  // "": the run's own
};

// Where the run's traces are and at which steps the layer was traced.
struct TracedRun {
  std::string dir;
  int64_t choices = 0;  // the router's columns: FFN experts, then null experts
  std::vector<int64_t> steps;
};

TracedRun find_traces(const TraceRequest& request) {
  if (!is_postgres_uri(request.db) && !std::filesystem::exists(request.db)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", request.db));
  }
  Store store(request.db, Store::Access::ReadOnly);
  const auto run = store.query("SELECT config_hash, config_yaml FROM runs WHERE id = ?", {request.run});
  if (run.rows.empty()) throw ConfigError(fmt::format("--run {}: no such run in '{}'", request.run, request.db));
  const RunConfig config = parse_run_config(run.rows[0][1].text, fmt::format("run {}'s config", request.run));
  TracedRun traced;
  traced.dir = trace_dir(request.checkpoint_dir.empty() ? config.checkpoint_dir : request.checkpoint_dir,
                         run.rows[0][0].text);
  traced.choices = routed_experts(config.model.moe);
  const auto steps = store.query(
      "SELECT step FROM metrics WHERE run_id = ? AND split = 'probe' AND name = ? ORDER BY step",
      {request.run, fmt::format("moe/l{}/trace_tokens", request.layer)});
  for (const auto& row : steps.rows) traced.steps.push_back(row[0].integer);
  if (traced.steps.empty()) {
    throw ConfigError(fmt::format(
        "run {} has no routing trace of layer {} (traced when train.trace_every > 0, in the MoE "
        "layers model.moe.layers = '{}' whose router assigns tokens)",
        request.run, request.layer, config.model.moe.layers.canonical()));
  }
  return traced;
}

std::string trace_text(const TraceRequest& request, const TracedRun& traced, int64_t step,
                       const LayerTrace& trace) {
  const int64_t tokens = trace.experts.size(0), width = trace.experts.size(1);
  const auto selected = trace.experts.ge(0);
  const auto load = torch::bincount(trace.experts.masked_select(selected), {}, traced.choices)
                        .to(torch::kDouble);
  const auto share = load / load.sum().clamp_min(1.0);
  std::string text = fmt::format(
      "run {} layer {} step {} (traced steps: {}): {} probe tokens, {:.3f} experts per token\n"
      "share of assignments per expert: {:.3f}\n"
      "{:>6} {:>6}  experts (gates)\n",
      request.run, request.layer, step, fmt::join(traced.steps, " "), tokens,
      selected.sum().item<double>() / static_cast<double>(std::max<int64_t>(tokens, 1)),
      fmt::join(std::vector<double>(share.data_ptr<double>(), share.data_ptr<double>() + traced.choices), " "),
      "token", "label");
  const auto experts = trace.experts.accessor<int64_t, 2>();
  const auto gates = trace.gates.accessor<float, 2>();
  const auto labels = trace.labels.accessor<int64_t, 1>();
  for (int64_t t = 0; t < tokens; ++t) {
    text += fmt::format("{:>6} {:>6} ", t, labels[t]);
    for (int64_t s = 0; s < width && experts[t][s] >= 0; ++s) {
      text += fmt::format(" {} ({:.3f})", experts[t][s], gates[t][s]);
    }
    text += '\n';
  }
  return text;
}

std::string trace_csv(const LayerTrace& trace) {
  std::string text = "token,label,expert,gate\n";
  const auto experts = trace.experts.accessor<int64_t, 2>();
  const auto gates = trace.gates.accessor<float, 2>();
  const auto labels = trace.labels.accessor<int64_t, 1>();
  for (int64_t t = 0; t < trace.experts.size(0); ++t) {
    for (int64_t s = 0; s < trace.experts.size(1) && experts[t][s] >= 0; ++s) {
      text += fmt::format("{},{},{},{:.9g}\n", t, labels[t], experts[t][s], gates[t][s]);
    }
  }
  return text;
}

int command_trace(const TraceRequest& request) {
  const TracedRun traced = find_traces(request);
  const int64_t step = request.step < 0 ? traced.steps.back() : request.step;
  if (std::find(traced.steps.begin(), traced.steps.end(), step) == traced.steps.end()) {
    throw ConfigError(fmt::format("--step {}: run {} traced layer {} at steps {}", step, request.run,
                                  request.layer, fmt::join(traced.steps, ", ")));
  }
  const LayerTrace trace = read_layer_trace(traced.dir, step, request.layer);
  if (request.format == "npy") {
    if (request.output.empty()) throw ConfigError("trace --format npy: name the file with --output");
    // The dense routing matrix [T, C]: the gate of each selected expert, 0 elsewhere.
    const auto selected = trace.experts.ge(0);
    auto dense = torch::zeros({trace.experts.size(0), traced.choices + 1})
                     .scatter_(1, trace.experts.masked_fill(selected.logical_not(), traced.choices), trace.gates);
    write_npy(request.output, dense.narrow(1, 0, traced.choices).contiguous());
    return kExitOk;
  }
  emit(request.format == "csv" ? trace_csv(trace) : trace_text(request, traced, step, trace), request.output);
  return kExitOk;
}

}  // namespace

void add_trace_command(CLI::App& app, Command& command) {
  auto request = std::make_shared<TraceRequest>();
  auto* trace = app.add_subcommand(
      "trace", "a run's routing trace: every probe token's experts and gates at a traced step");
  trace->add_option("db", request->db, "results database")->required();
  trace->add_option("--run", request->run, "the run's id")->required();
  trace->add_option("--layer", request->layer, "block index of an MoE layer")->required();
  trace->add_option("--step", request->step, "a traced step (default: the last, the final evaluation's)");
  trace->add_option("--format", request->format,
                    "text (a table with the load per expert), csv (token,label,expert,gate), or "
                    "npy (the dense [tokens, experts] gate matrix; needs --output)")
      ->check(CLI::IsMember({"text", "csv", "npy"}));
  trace->add_option("--output", request->output, "write to this file instead of stdout");
  trace->add_option("--checkpoint-dir", request->checkpoint_dir,
                    "where the run's trace folder is, if not in its checkpoint_dir (moved results)");
  trace->callback([request, &command] { command = [request] { return command_trace(*request); }; });
}

}  // namespace moelab
