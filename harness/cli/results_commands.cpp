// The commands that read results: `query`, `report`, `plot`, `robustness`, and `db copy` /
// `db merge`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/report/claims.h"
#include "harness/report/compare.h"
#include "harness/report/plots.h"
#include "harness/report/presets.h"
#include "harness/report/report.h"
#include "harness/report/robustness.h"
#include "harness/report/table.h"
#include "harness/store/store.h"
#include "harness/store/transfer.h"
#include "tasks/task_metrics.h"

namespace moelab {

// Writes a rendered table to `output`, or to stdout when it is "".
void emit(const std::string& text, const std::string& output) {
  if (output.empty()) {
    std::cout << text;
    return;
  }
  std::ofstream out(output);
  out << text;
  if (!out) throw Error(fmt::format("cannot write '{}'", output));
  fmt::print(stderr, "written to {}\n", output);
}

namespace {

int command_query(const std::string& db, const std::string& sql, bool write, bool csv, bool json) {
  if (!is_postgres_uri(db) && !std::filesystem::exists(db)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", db));
  }
  const QueryResult result = query_database(db, sql, write);
  std::cout << (csv ? format_csv(result) : json ? format_json(result) : format_aligned(result));
  return kExitOk;
}

int command_report(const std::string& db, ReportRequest request, const std::string& format,
                   const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  emit(render_report(report_table(collect_groups(store, request), request), request, format), output);
  return kExitOk;
}

int command_compare(const std::string& db, const CompareRequest& request, const std::string& format,
                    const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  emit(render_comparison(compare_groups(store, request), format), output);
  return kExitOk;
}

int command_claims(const std::string& path, const std::string& db, const std::string& format,
                   const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  const ClaimsFile file = read_claims(path, store);
  emit(render_claims(test_claims(store, file), file, db, format), output);
  return kExitOk;
}

int command_robustness(const std::string& db, RobustnessRequest request, const std::string& format,
                       const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  const QueryResult table = robustness_report(store, request);
  ReportRequest rendering;
  rendering.group_by = request.group_by;
  rendering.baseline = request.baseline;
  rendering.metric = request.suite.empty()
                         ? std::string("robustness to attacks")
                         : fmt::format("robustness on {}{}", request.suite,
                                       request.by.empty() ? "" : " by " + request.by);
  emit(render_report(table, rendering, format), output);
  return kExitOk;
}

}  // namespace

void add_query_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, sql, preset;
    bool write = false, csv = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* query = app.add_subcommand("query", "run SQL on a results database");
  query->add_option("db", args->db, "results database")->required();
  auto* sql_option = query->add_option("sql", args->sql, "SQL statement");
  query->add_option("--preset", args->preset, fmt::format("{}", fmt::join(preset_names(), " | ")))
      ->check(CLI::IsMember(preset_names()))
      ->excludes(sql_option);
  query->add_flag("--write", args->write,
                  "open the database for writing (default: read-only, no change possible)");
  auto* csv_flag = query->add_flag("--csv", args->csv, "CSV output");
  query->add_flag("--json", args->json, "JSON output")->excludes(csv_flag);
  query->callback([args, &command] {
    command = [args] {
      if (args->sql.empty() && args->preset.empty()) throw ConfigError("query: give SQL or --preset");
      return command_query(args->db, args->preset.empty() ? args->sql : preset_sql(args->preset),
                           args->write, args->csv, args->json);
    };
  });
}

void add_compare_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, format = "text", output, group_by = "router", pair_by = "seed";
    double margin = 0, at_flops = 0;
    CompareRequest request;
  };
  auto args = std::make_shared<Args>();
  auto* compare = app.add_subcommand(
      "compare", "each group against a baseline, paired by seed: mean difference, 95% CI, paired t, "
                 "Wilcoxon, Holm, MDE, equivalence");
  compare->add_option("db", args->db, "results database")->required();
  compare->add_option("--sweep", args->request.sweep, "only this sweep's runs");
  compare->add_option("--group-by", args->group_by, "config keys, comma separated (router = router.name)");
  compare->add_option("--baseline", args->request.baseline, "the group the others are compared with")
      ->required();
  compare->add_option("--metric", args->request.metric,
                      "a summary name (SPLIT/METRIC); default: the runs' main test metric");
  compare->add_option("--pair-by", args->pair_by,
                      "config keys whose equal values pair runs of two groups (default seed)");
  auto* margin = compare->add_option(
      "--margin", args->margin, "equivalence margin delta > 0, in the metric's units, fixed before looking");
  auto* at_flops = compare->add_option(
      "--at-flops", args->at_flops,
      "compare at this many training FLOPs (the metric's logged curve; default metric: the main "
      "val metric) instead of at the end")->check(CLI::PositiveNumber);
  compare->add_option("--alpha", args->request.alpha, "significance level")->check(CLI::Range(1e-6, 0.5));
  compare->add_option("--format", args->format, "text | md | csv | latex | json")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json"}));
  compare->add_option("-o,--output", args->output, "write to this file instead of stdout");
  compare->callback([args, margin, at_flops, &command] {
    if (margin->count() > 0) args->request.margin = args->margin;
    if (at_flops->count() > 0) args->request.at_flops = args->at_flops;
    command = [args] {
      args->request.group_by = split_keys(args->group_by);
      args->request.pair_by = split_keys(args->pair_by);
      return command_compare(args->db, args->request, args->format, args->output);
    };
  });
}

void add_claims_command(CLI::App& app, Command& command) {
  struct Args {
    std::string file, db = "results/moelab.db", format = "text", output;
  };
  auto args = std::make_shared<Args>();
  auto* claims = app.add_subcommand(
      "claims", "test a claims file (experiments/claims/*.yaml) on the results: effect, CI, "
                "adjusted p, MDE, verdict, scale");
  claims->add_option("file", args->file, "claims YAML")->required();
  claims->add_option("--db", args->db, "results database (default results/moelab.db)");
  claims->add_option("--format", args->format, "text | md | json | html")
      ->check(CLI::IsMember({"text", "md", "json", "html"}));
  claims->add_option("-o,--output", args->output, "write to this file instead of stdout");
  claims->callback([args, &command] {
    command = [args] { return command_claims(args->file, args->db, args->format, args->output); };
  });
}

void add_report_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, format = "text", output, group_by = "router";
    ReportRequest request;
  };
  auto args = std::make_shared<Args>();
  auto* report = app.add_subcommand("report", "a metric per group over seeds: mean, std, 95% CI, Welch p");
  report->add_option("db", args->db, "results database")->required();
  report->add_option("--sweep", args->request.sweep, "only this sweep's runs");
  report->add_option("--group-by", args->group_by, "config keys, comma separated (router = router.name)");
  report->add_option("--metric", args->request.metric,
                     "a summary name (SPLIT/METRIC); default: the runs' main test metric");
  report->add_option("--baseline", args->request.baseline, "the group to test the others against");
  report->add_option("--format", args->format, "text | md | csv | latex | json | html")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json", "html"}));
  report->add_option("-o,--output", args->output, "write to this file instead of stdout");
  report->callback([args, &command] {
    command = [args] {
      args->request.group_by = split_keys(args->group_by);
      return command_report(args->db, args->request, args->format, args->output);
    };
  });
}

void add_plot_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, group_by = "router";
    bool data_only = false;
    PlotRequest request;
  };
  auto args = std::make_shared<Args>();
  PlotRequest& request = args->request;
  auto* plot = app.add_subcommand("plot", "figures with gnuplot (PNG, SVG, data and script)");
  plot->add_option("db", args->db, "results database")->required();
  plot->add_option("--kind", request.kind, "curves | corruption | load | shares | flips | specialisation")
      ->check(CLI::IsMember({"curves", "corruption", "load", "shares", "flips", "specialisation"}));
  plot->add_option("--sweep", request.sweep, "only this sweep's runs");
  plot->add_option("--group-by", args->group_by, "config keys, comma separated (router = router.name)");
  plot->add_option("--metric", request.metric,
                   "curves: SPLIT/NAME (e.g. train/loss); default: the runs' main val metric. "
                   "load: a per-layer routing metric; default: load_max_over_mean");
  plot->add_option("--suite", request.suite,
                   "corruption: a suite with severities; default: the first declared one. "
                   "flips: a suite with routing_flip results; default: the first found");
  plot->add_option("--layer", request.layer,
                   "specialisation: the MoE layer's block index; default: the deepest traced");
  plot->add_option("-o,--output-dir", request.output_dir, "folder for the files");
  plot->add_flag("--data-only", args->data_only, "write data and script, do not run gnuplot");
  plot->callback([args, &command] {
    command = [args] {
      args->request.render = !args->data_only;
      args->request.group_by = split_keys(args->group_by);
      Store store(args->db, Store::Access::ReadOnly);
      for (const auto& file : make_plot(store, args->request)) fmt::print("{}\n", file);
      return kExitOk;
    };
  });
}

void add_robustness_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, format = "text", output, group_by = "router";
    RobustnessRequest request;
  };
  auto args = std::make_shared<Args>();
  std::vector<std::string> suites;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& suite : task->suites) suites.push_back(suite.name);
  }
  auto* robustness = app.add_subcommand(
      "robustness",
      "per group over seeds: clean error, corruption error, mCE, relative mCE, robust accuracy "
      "per attack (mean, 95% CI, Welch p against the baseline group)");
  robustness->add_option("db", args->db, "results database")->required();
  robustness->add_option("--sweep", args->request.sweep, "only this sweep's runs");
  robustness->add_option("--group-by", args->group_by,
                         "config keys, comma separated (router = router.name)");
  robustness->add_option("--suite", args->request.suite,
                         fmt::format("a corruption suite: {} (default: the one the runs have)",
                                     fmt::join(suites, " | ")))
      ->check(CLI::IsMember(suites));
  robustness->add_option("--baseline", args->request.baseline,
                         "the group in AlexNet's role (its errors averaged over its seeds); "
                         "default: the first group");
  robustness->add_option("--by", args->request.by,
                         "break down per corruption (error, CE) or per severity (error)")
      ->check(CLI::IsMember({"corruption", "severity"}));
  robustness->add_option("--format", args->format, "text | md | csv | latex | json | html")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json", "html"}));
  robustness->add_option("-o,--output", args->output, "write to this file instead of stdout");
  robustness->callback([args, &command] {
    command = [args] {
      args->request.group_by = split_keys(args->group_by);
      return command_robustness(args->db, args->request, args->format, args->output);
    };
  });
}

void add_db_commands(CLI::App& app, Command& command) {
  auto* db = app.add_subcommand("db", "move results between databases: copy | merge");
  db->require_subcommand(1);
  struct CopyArgs {
    std::string source, destination;
  };
  auto copy_args = std::make_shared<CopyArgs>();
  auto* copy = db->add_subcommand("copy", "every run, with its id, into an empty database");
  copy->add_option("source", copy_args->source, "results database to read")->required();
  copy->add_option("destination", copy_args->destination, "database to create or fill (no runs yet)")
      ->required();
  copy->callback([copy_args, &command] {
    command = [copy_args] {
      const int64_t runs = copy_database(copy_args->source, copy_args->destination);
      fmt::print("copied {} run(s) from {} to {}\n", runs, copy_args->source, copy_args->destination);
      return kExitOk;
    };
  });
  struct MergeArgs {
    std::vector<std::string> inputs;
    std::string output;
  };
  auto merge_args = std::make_shared<MergeArgs>();
  auto* merge = db->add_subcommand(
      "merge", "runs from several databases into one: a done run whose config hash is already "
               "there done is kept once, differing summaries are reported as conflicts");
  merge->add_option("inputs", merge_args->inputs, "results databases to read, in order")->required();
  merge->add_option("-o,--output", merge_args->output, "database to create or add to")->required();
  merge->callback([merge_args, &command] {
    command = [merge_args] {
      std::cout << merge_databases(merge_args->inputs, merge_args->output).text();
      return kExitOk;
    };
  });
}

}  // namespace moelab
