// The `moelab` command line: the one list of its subcommands (harness/cli/commands.h) and the
// program's entry. Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string>
#include <vector>

#include "harness/cli/commands.h"
#include "harness/core/blas.h"
#include "harness/core/build_info.h"
#include "harness/core/cpu_memory.h"
#include "harness/core/exception_text.h"
#include "harness/core/fields.h"
#include "harness/run/plugins.h"
#include "harness/train/provenance.h"

namespace moelab {
namespace {

// Every subcommand, in the order `moelab --help` lists them.
constexpr void (*kSubcommands[])(CLI::App&, Command&) = {
    add_run_command,     add_list_command,       add_query_command, add_route_command,
    add_bench_command,   add_sweep_commands,     add_report_command, add_compare_command, add_claims_command, add_plot_command,
    add_robustness_command, add_db_commands, add_trace_command,
};

std::string version_text() {
  return fmt::format("moelab {} (git {}{}, LibTorch {})\nBLAS: {}", kVersion, kGitCommit,
                     kGitDirty ? ", dirty" : "", torch_version(), blas_description());
}

// CLI11 would call an unknown first word an unexpected argument: name it, and the nearest command.
void check_command_name(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](const CLI::App* candidate) {
         return !candidate->get_group().empty();
       })) {
    names.push_back(sub->get_name());
  }
  if (std::find(names.begin(), names.end(), word) != names.end() || word == "sweep-worker") return;
  const std::string hint = nearest_name(word, names);
  throw ConfigError(fmt::format("unknown command '{}'{}; commands: {}", word,
                                hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                                fmt::join(names, ", ")));
}

int run_cli(int argc, char** argv) {
  CLI::App app{"moelab: compare sparse mixture-of-experts routing strategies"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);
  Command command;
  for (const auto add : kSubcommands) add(app, command);
  if (argc > 1 && argv[1][0] != '-') check_command_name(app, argv[1]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  return command();
}

}  // namespace
}  // namespace moelab

int main(int argc, char** argv) {
  moelab::select_blas_kernels(argv);  // before anything else: may start this program again
  moelab::configure_cpu_memory();
  moelab::install_plugins();
  try {
    return moelab::run_cli(argc, argv);
  } catch (const moelab::ConfigError& e) {
    fmt::print(stderr, "moelab: error: {}\n", e.what());
    return moelab::kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moelab: error: {}\n", moelab::exception_text(e));
    return moelab::kExitRunFailed;
  }
}
