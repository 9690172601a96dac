// `moelab run`, `list` and `route`: one config trained and evaluated, the plugins and config
// keys listed, a router's decisions inspected.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/cli/route_command.h"
#include "harness/config/config.h"
#include "harness/report/table.h"
#include "harness/run/runner.h"
#include "harness/sweep/dense_parent.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

QueryResult summary_table(const RunOutcome& outcome) {
  QueryResult table;
  table.columns = {"metric", "value"};
  for (const auto& [name, value] : outcome.summaries) {
    Cell metric{Cell::Type::Text, 0, 0.0, name};
    Cell number{Cell::Type::Real, 0, value, ""};
    table.rows.push_back({metric, number});
  }
  return table;
}

int command_run(const std::string& path, const std::vector<std::string>& overrides,
                bool dump_config, bool resume, double stale_after_seconds) {
  RunConfig config = load_run_config(path, overrides);
  if (dump_config) {
    std::cout << canonical_yaml(config);
    return kExitOk;
  }
  try {
    check_runnable(config);  // before any output or row: exit 2 for what the config got wrong
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", path, e.what()));
  }
  install_interrupt_handlers();
  fmt::print(stderr, "moelab: run '{}' (config {}), task {}, router {}, results -> {}\n",
             config.name, config_hash(config).substr(0, 12), config.task.name,
             config.router.name, config.db);
  RunOutcome outcome = run_alone(config, resume, stale_after_seconds);
  if (outcome.status != RunStatus::Done) {
    fmt::print(stderr, "moelab: run {} {}: {}\n", outcome.run_id, run_status_text(outcome.status), outcome.error);
    return kExitRunFailed;
  }
  fmt::print("run {} done\n{}", outcome.run_id, format_aligned(summary_table(outcome)));
  return kExitOk;
}

template <class Entry>
void print_plugins(const std::vector<Entry>& entries, bool verbose) {
  for (const auto& entry : entries) {
    fmt::print("{:<16} {}\n", entry.name, entry.summary);
    if (!verbose) continue;
    auto options = entry.make_options();
    for (const auto& row : list_fields(*options)) {
      fmt::print("    {:<16} {:<8} default {:<10} {}{}\n", row.path, row.type,
                 row.value.empty() ? "\"\"" : row.value, row.help,
                 row.rule.empty() ? "" : fmt::format(" [{}]", row.rule));
    }
  }
}

int command_list(const std::string& what, bool verbose) {
  if (what == "routers") {
    print_plugins(router_registry(), verbose);
  } else if (what == "tasks") {
    print_plugins(task_registry(), verbose);
  } else {
    RunConfig defaults;
    for (const auto& row : list_fields(defaults)) {
      fmt::print("{:<28} {:<8} default {:<12} {}{}\n", row.path, row.type,
                 row.value.empty() ? "\"\"" : row.value, row.help,
                 row.rule.empty() ? "" : fmt::format(" [{}]", row.rule));
    }
  }
  return kExitOk;
}

}  // namespace

void add_run_command(CLI::App& app, Command& command) {
  struct Args {
    std::string config_path;
    std::vector<std::string> overrides;
    bool dump_config = false, resume = false;
    double stale_after = kDefaultStaleSeconds;
  };
  auto args = std::make_shared<Args>();
  auto* run = app.add_subcommand("run", "train and evaluate one run config");
  run->add_option("config", args->config_path, "run config YAML")->required()->check(CLI::ExistingFile);
  run->add_option("overrides", args->overrides, "key=value overrides with dotted keys (train.lr=3e-4)");
  run->add_flag("--dump-config", args->dump_config, "print the fully resolved config and exit");
  run->add_flag("--resume", args->resume,
                "continue this config's newest unfinished run from its checkpoint");
  run->add_option("--stale-after", args->stale_after,
                  "seconds without a heartbeat before a dense parent that another process "
                  "trains is taken over (>= 30)")
      ->check(CLI::Range(30.0, 1e9));
  run->callback([args, &command] {
    command = [args] {
      return command_run(args->config_path, args->overrides, args->dump_config, args->resume,
                         args->stale_after);
    };
  });
}

void add_list_command(CLI::App& app, Command& command) {
  struct Args {
    std::string what;
    bool verbose = false;
  };
  auto args = std::make_shared<Args>();
  auto* list = app.add_subcommand("list", "list routers, tasks or config keys");
  list->add_option("what", args->what, "routers | tasks | config")
      ->required()
      ->check(CLI::IsMember({"routers", "tasks", "config"}));
  list->add_flag("-v,--verbose", args->verbose, "show every plugin's parameters");
  list->callback([args, &command] { command = [args] { return command_list(args->what, args->verbose); }; });
}

void add_route_command(CLI::App& app, Command& command) {
  auto request = std::make_shared<RouteRequest>();
  auto* route = app.add_subcommand(
      "route",
      "run a router's decisions on logits from .npy files [T, E], batch after batch, and print "
      "them and the router's state as JSON");
  route->add_option("--router", request->router, "registered router name")->required();
  route->add_option("--logits", request->logits_paths,
                    "float32 .npy file [T, E]; repeat for several batches, routed in order")
      ->required()
      ->allow_extra_args(false)  // one file per --logits; router options follow freely
      ->check(CLI::ExistingFile);
  route->add_option("options", request->options, "router options as key=value (k=1 p=0.5)");
  route->add_flag("--training", request->training,
                  "decide as in training, and update the router's state after each batch "
                  "(default: eval, state unchanged)");
  route->add_option("--seed", request->seed, "run seed (random draws)");
  route->add_option("--step", request->step, "training step of the first batch (SSR's draw, schedules)");
  route->add_option("--state", request->state_path, "start from a state written by --save-state")
      ->check(CLI::ExistingFile);
  route->add_option("--checkpoint", request->checkpoint_path,
                    "start from the router state in a run's checkpoint (<config hash>.pt; "
                    "give the run's router options)")
      ->check(CLI::ExistingFile);
  route->add_option("--layer", request->layer, "with --checkpoint: the block whose router")
      ->check(CLI::NonNegativeNumber);
  route->add_option("--save-state", request->save_state_path,
                    "write the router's state after the last batch to this file");
  route->callback([request, &command] {
    command = [request] {
      std::cout << route_json(*request);
      return kExitOk;
    };
  });
}

}  // namespace moelab
