// The subcommands of `moelab`, one registration function each, listed once in main.cpp:
// run_commands.cpp (run, list, route), sweep_commands.cpp (sweep, sweep-worker),
// results_commands.cpp (query, report, plot, robustness, db), trace_command.cpp (trace),
// bench_command.cpp (bench).
// Each registers its options on the app and, once parsed, sets `command` to its work; the
// option values live in a shared struct the work reads after parsing.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace moelab {

// Exit codes: 0 success, 1 a run failed, 2 usage or configuration error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRunFailed = 1;
inline constexpr int kExitUsage = 2;

using Command = std::function<int()>;

void add_run_command(CLI::App& app, Command& command);
void add_list_command(CLI::App& app, Command& command);
void add_route_command(CLI::App& app, Command& command);
void add_sweep_commands(CLI::App& app, Command& command);
void add_query_command(CLI::App& app, Command& command);
void add_report_command(CLI::App& app, Command& command);
void add_compare_command(CLI::App& app, Command& command);
void add_claims_command(CLI::App& app, Command& command);
void add_plot_command(CLI::App& app, Command& command);
void add_robustness_command(CLI::App& app, Command& command);
void add_db_commands(CLI::App& app, Command& command);
void add_bench_command(CLI::App& app, Command& command);
void add_trace_command(CLI::App& app, Command& command);

// Writes a rendered table to `output`, or to stdout when it is "".
void emit(const std::string& text, const std::string& output);

}  // namespace moelab
