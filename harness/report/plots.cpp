// Plot data, gnuplot scripts and rendering.
#include "harness/report/plots.h"

#include "harness/report/robustness.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <limits>
#include <map>
#include <optional>

#include "harness/core/error.h"
#include "harness/core/parse.h"
#include "harness/report/presets.h"
#include "harness/report/report.h"
#include "harness/report/robustness.h"
#include "harness/report/stats.h"
#include "harness/train/routing_probe.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

std::vector<RunGroup> group_runs(Store& store, const PlotRequest& request) {
  auto groups = group_done_runs(store, request.sweep, request.group_by);
  if (groups.empty()) {
    throw Error(fmt::format("plot: no done runs{}", request.sweep.empty() ? "" : " in sweep '" + request.sweep + "'"));
  }
  return groups;
}

std::string slug(const std::string& text) {
  std::string out;
  for (char c : text) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

std::string quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

struct Canvas {
  int width = 900, height = 560;
};

// Writes the script twice-rendered (PNG through cairo, which draws translucent fills, and SVG)
// and runs gnuplot on it.
std::vector<std::string> finish(const PlotRequest& request, const std::string& base,
                                const std::string& body, Canvas canvas = {}) {
  const std::string script = base + ".gp";
  std::ofstream(script) << "# moelab plot; edit and run: gnuplot " << std::filesystem::path(script).filename().string()
                        << "\nfiles = \"png svg\"\ndo for [f in files] {\n"
                        << fmt::format("  if (f eq \"png\") {{ set terminal pngcairo noenhanced size {0},{1} }} "
                                       "else {{ set terminal svg noenhanced size {0},{1} }}\n",
                                       canvas.width, canvas.height)
                        << "  set output \"" << std::filesystem::path(base).filename().string() << ".\".f\n"
                        << body << "}\n";
  std::vector<std::string> files = {base + ".dat", script};
  if (!request.render) return files;
  const std::string command = fmt::format("cd {} && gnuplot {} 2>&1",
                                          quote(std::filesystem::path(base).parent_path().string()),
                                          quote(std::filesystem::path(script).filename().string()));
  if (std::system(command.c_str()) != 0) {
    throw Error(fmt::format("gnuplot failed on '{}' (is gnuplot-nox installed? "
                            "harness/scripts/setup.sh installs it)", script));
  }
  files.push_back(base + ".png");
  files.push_back(base + ".svg");
  return files;
}

// "sweep S" or "all runs", for figure titles.
std::string scope_of(const PlotRequest& request) {
  return request.sweep.empty() ? "all runs" : "sweep " + request.sweep;
}

// Panels in rows of up to three.
Canvas panel_canvas(size_t panels) {
  const int columns = static_cast<int>(std::min<size_t>(panels, 3));
  const int rows = static_cast<int>((panels + 2) / 3);
  return Canvas{std::max(900, 420 * columns), 80 + 320 * rows};
}

// One heatmap panel per group, in rows of up to three, on one colour scale: `data` holds one
// block per group (index i) of "x y value" rows, a blank line between x values.
std::string heatmap_panels(const std::string& data_file, const std::vector<std::string>& labels,
                           const std::string& title, const std::string& xlabel,
                           const std::string& ylabel, const std::string& cblabel, double low,
                           double high) {
  std::string body = fmt::format(
      "  set multiplot layout {},{} title {}\n  set xlabel {}\n  set ylabel {}\n"
      "  set cblabel {}\n  set cbrange [{}:{}]\n  set palette rgb 33,13,10\n"
      "  set ytics 1\n  set autoscale xfix\n  set autoscale yfix\n",
      (labels.size() + 2) / 3, std::min<size_t>(labels.size(), 3), quote(title), quote(xlabel),
      quote(ylabel), quote(cblabel), low,
      high > low ? high : low + 1e-9);
  for (size_t i = 0; i < labels.size(); ++i) {
    body += fmt::format("  set title {}\n  plot \"{}\" index {} using 1:2:3 with image notitle\n",
                        quote(labels[i]), data_file, i);
  }
  return body + "  unset multiplot\n";
}

std::vector<std::string> curves(Store& store, const PlotRequest& request, const std::vector<RunGroup>& groups) {
  const std::string metric =
      request.metric.empty() ? main_summary(store, request.sweep, "val") : request.metric;
  const auto slash = metric.find('/');
  if (slash == std::string::npos) {
    throw ConfigError(fmt::format("plot curves: --metric '{}' is not SPLIT/NAME (val/loss, train/loss)",
                                  metric));
  }
  const std::string split = metric.substr(0, slash), name = metric.substr(slash + 1);
  const std::string base = request.output_dir + "/curves_" + slug(metric);
  std::ofstream data(base + ".dat");
  data << "# step mean min max n, one block per group: " << metric << "\n";
  std::string plot = fmt::format("  set title {}\n  set xlabel \"step\"\n  set ylabel {}\n"
                                 "  set key below\n  set grid\n"
                                 "  set style fill transparent solid 0.2 noborder\n  plot ",
                                 quote(fmt::format("{}: {} (mean over seeds, band min-max)",
                                                   scope_of(request), metric)),
                                 quote(metric));
  int index = 0;
  for (const auto& group : groups) {
    const std::string& label = group.label;
    std::map<int64_t, std::vector<double>> by_step;
    for (int64_t run : group.run_ids) {
      const auto rows = store.query("SELECT step, value FROM metrics WHERE run_id = ? AND split = ? "
                                    "AND name = ? AND value IS NOT NULL",
                                    {run, split, name});
      for (const auto& row : rows.rows) by_step[row[0].integer].push_back(row[1].number());
    }
    if (by_step.empty()) continue;
    data << "# " << label << "\n";
    for (const auto& [step, values] : by_step) {
      const Summary s = summarise(values);
      const auto [low, high] = std::minmax_element(values.begin(), values.end());
      data << step << " " << s.mean << " " << *low << " " << *high << " " << s.n << "\n";
    }
    data << "\n\n";
    plot += fmt::format("{}\"{}.dat\" index {} using 1:3:4 with filledcurves lc {} notitle, "
                        "'' index {} using 1:2 with linespoints lc {} pt 7 ps 0.5 title {}",
                        index == 0 ? "" : ", \\\n       ", std::filesystem::path(base).filename().string(),
                        index, index + 1, index, index + 1, quote(label));
    ++index;
  }
  data.close();
  if (index == 0) throw Error(fmt::format("plot curves: no run has the metric '{}'", metric));
  return finish(request, base, plot + "\n");
}

// A data row "x mean ci95_low ci95_high n" of `values` (no interval for one value).
void write_ci_row(std::ofstream& data, int64_t x, const std::vector<double>& values) {
  const Summary s = summarise(values);
  const double half = std::isnan(s.ci_half) ? 0.0 : s.ci_half;
  data << x << " " << s.mean << " " << s.mean - half << " " << s.mean + half << " " << s.n << "\n";
}

// The plot terms of data block `index` of base.dat: its CI band (columns 3:4) and its mean
// line (column 2), in colour index + 1, titled `label`.
std::string band_and_line(const std::string& base, int index, const std::string& label) {
  return fmt::format("{}\"{}.dat\" index {} using 1:3:4 with filledcurves lc {} notitle, "
                     "'' index {} using 1:2 with linespoints lc {} pt 7 title {}",
                     index == 0 ? "" : ", \\\n       ", std::filesystem::path(base).filename().string(),
                     index, index + 1, index, index + 1, quote(label));
}

std::vector<std::string> corruption(Store& store, const PlotRequest& request, const std::vector<RunGroup>& groups) {
  std::vector<int64_t> runs;
  for (const auto& group : groups) runs.insert(runs.end(), group.run_ids.begin(), group.run_ids.end());
  const std::string suite_name =
      request.suite.empty() ? scored_suite(store, runs, /*with_severities=*/true) : request.suite;
  if (suite_name.empty()) {
    std::vector<std::string> with_severities;
    for (const TaskMetrics* task : all_task_metrics()) {
      for (const auto& suite : task->suites) {
        if (suite.severities > 1) with_severities.push_back(suite.name);
      }
    }
    throw ConfigError(fmt::format("plot corruption: no run has results of a corruption suite with "
                                  "severities (task.corruptions: {})",
                                  fmt::join(with_severities, ", ")));
  }
  const CorruptionSuite& suite = *find_suite(suite_name).suite;
  if (suite.severities < 2) {
    throw ConfigError(fmt::format("plot corruption: suite '{}' has one severity (the plot needs "
                                  "severities)", suite.name));
  }
  const std::string base = request.output_dir + "/corruption_" + suite.name;
  std::ofstream data(base + ".dat");
  data << "# severity mean_error ci95_low ci95_high n (0 = clean; per run the mean over the "
       << suite.name << " corruptions, then mean and 95% CI over the group's runs)\n";
  std::string plot = fmt::format(
      "  set title {}\n  set xlabel \"severity (0 = clean test set)\"\n"
      "  set ylabel \"error (1 - {})\"\n  set xtics 1\n  set key below\n  set grid\n"
      "  set style fill transparent solid 0.2 noborder\n  plot ",
      quote(fmt::format("{}: {} error by severity (mean over corruptions; band: 95% CI over "
                        "seeds)",
                        scope_of(request), suite.name)),
      suite.metric);
  int index = 0;
  for (const auto& group : groups) {
    std::map<int64_t, std::vector<double>> by_severity;  // severity -> one value per run
    for (int64_t run : group.run_ids) {
      if (!has_suite_results(store, run, suite.name)) continue;
      const CorruptionErrors errors = corruption_errors(store, run, suite.name);
      by_severity[0].push_back(errors.clean_error);
      const size_t severities = errors.errors.begin()->second.size();  // the run's, equal per corruption
      for (size_t s = 0; s < severities; ++s) {
        double total = 0.0;
        for (const auto& [name, values] : errors.errors) total += values.at(s);
        by_severity[static_cast<int64_t>(s) + 1].push_back(total / static_cast<double>(errors.errors.size()));
      }
    }
    if (by_severity.empty()) continue;
    data << "# " << group.label << "\n";
    for (const auto& [severity, values] : by_severity) {
      write_ci_row(data, severity, values);
    }
    data << "\n\n";
    plot += band_and_line(base, index, group.label);
    ++index;
  }
  data.close();
  if (index == 0) {
    throw Error(fmt::format("plot corruption: no run has {} results (task.corruptions)", suite.name));
  }
  return finish(request, base, plot + "\n");
}

// The layer of a per-layer metric name "moe/l<i>/<rest>", if it is one.
std::optional<int64_t> layer_of(const std::string& name) {
  const size_t slash = name.find('/', 4);
  if (name.rfind("moe/l", 0) != 0 || slash == std::string::npos || slash == 5) return std::nullopt;
  const std::string digits = name.substr(5, slash - 5);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return to_int64(digits, name + ": layer");
}

// Per-layer routing metric values of a run at each logged training step: layer -> step -> value.
using LayerSeries = std::map<int64_t, std::map<int64_t, double>>;
LayerSeries layer_series(Store& store, int64_t run, const std::string& metric) {
  const auto rows = store.query("SELECT step, name, value FROM metrics WHERE run_id = ? AND "
                                "split = 'train' AND name LIKE ? AND value IS NOT NULL",
                                {run, "moe/l%/" + metric});
  LayerSeries series;
  for (const auto& row : rows.rows) {
    const std::string& name = row[1].text;  // moe/l<i>/<metric>
    const auto layer = layer_of(name);
    if (layer && name.substr(name.find('/', 4) + 1) == metric) series[*layer][row[0].integer] = row[2].number();
  }
  return series;
}

// Expert-load shares at each run's last logged step, per layer and expert, averaged over the
// group's runs; the groups side by side on one colour scale.
std::vector<std::string> shares(Store& store, const PlotRequest& request, const std::vector<RunGroup>& groups) {
  const std::string base = request.output_dir + "/shares";
  std::ofstream data(base + ".dat");
  data << "# layer expert share: the last logged step's load shares, mean over each group's runs\n";
  std::vector<std::string> labels;
  double high = 0.0;
  for (const auto& group : groups) {
    std::map<int64_t, std::map<int64_t, std::vector<double>>> shares;  // layer -> expert -> runs
    for (int64_t run : group.run_ids) {
      const auto rows = store.query(R"sql(
SELECT name, value FROM metrics WHERE run_id = ?1 AND split = 'train' AND name LIKE 'moe/l%/load_e%'
  AND step = (SELECT MAX(step) FROM metrics WHERE run_id = ?1 AND name LIKE 'moe/l%/load_e%'))sql",
                                    {run});
      for (const auto& row : rows.rows) {
        const std::string& name = row[0].text;  // moe/l<i>/load_e<j>
        const std::string expert = name.substr(name.rfind("/load_e") + 7);
        const auto layer = layer_of(name);
        if (!layer || expert.empty() || expert.find_first_not_of("0123456789") != std::string::npos) continue;
        shares[*layer][to_int64(expert, name + ": expert")].push_back(row[1].number());
      }
    }
    if (shares.empty()) continue;
    data << "# " << group.label << "\n";
    for (const auto& [layer, experts] : shares) {
      for (const auto& [expert, values] : experts) {
        const double mean = summarise(values).mean;
        high = std::max(high, mean);
        data << layer << " " << expert << " " << mean << "\n";
      }
      data << "\n";
    }
    data << "\n";
    labels.push_back(group.label);
  }
  data.close();
  if (labels.empty()) throw Error("plot shares: no run has logged per-expert loads");
  const std::string body = heatmap_panels(
      std::filesystem::path(base).filename().string() + ".dat", labels,
      fmt::format("{}: expert load at the last logged step (mean over seeds)", scope_of(request)),
      "block", "expert", "share of the block's assignments", 0.0, high);
  return finish(request, base, body, panel_canvas(labels.size()));
}

// A balance metric per layer over training (default load_max_over_mean), averaged over each
// group's runs; the groups side by side on one colour scale.
std::vector<std::string> load(Store& store, const PlotRequest& request, const std::vector<RunGroup>& groups) {
  const std::string metric = request.metric.empty() ? "load_max_over_mean" : request.metric;
  const std::string base = request.output_dir + "/load_" + slug(metric);
  std::ofstream data(base + ".dat");
  data << "# step layer " << metric << ", mean over each group's runs\n";
  std::vector<std::string> labels;
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (const auto& group : groups) {
    std::map<int64_t, std::map<int64_t, std::vector<double>>> values;  // step -> layer -> runs
    for (int64_t run : group.run_ids) {
      for (const auto& [layer, steps] : layer_series(store, run, metric)) {
        for (const auto& [step, value] : steps) values[step][layer].push_back(value);
      }
    }
    if (values.empty()) continue;
    data << "# " << group.label << "\n";
    for (const auto& [step, layers] : values) {
      for (const auto& [layer, runs] : layers) {
        const double mean = summarise(runs).mean;
        low = std::min(low, mean);
        high = std::max(high, mean);
        data << step << " " << layer << " " << mean << "\n";
      }
      data << "\n";
    }
    data << "\n";
    labels.push_back(group.label);
  }
  data.close();
  if (labels.empty()) {
    throw Error(fmt::format("plot load: no run has logged the per-layer metric 'moe/l<i>/{}'", metric));
  }
  const std::string body = heatmap_panels(
      std::filesystem::path(base).filename().string() + ".dat", labels,
      fmt::format("{}: {} per block over training (mean over seeds)", scope_of(request), metric),
      "step", "block", metric, low, high);
  return finish(request, base, body, panel_canvas(labels.size()));
}

// A suite's routing_flip (task.routing_replay) per group: against severity (mean over the
// corruptions, then over the runs with a 95% CI band), or for a one-severity suite per
// corruption.
std::vector<std::string> flips(Store& store, const PlotRequest& request, const std::vector<RunGroup>& groups) {
  const std::string suffix = "/moe/routing_flip";
  // group -> x (severity, or the corruption's index) -> one value per run
  std::vector<std::map<int64_t, std::vector<double>>> by_group(groups.size());
  std::string suite_name = request.suite;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int64_t run : groups[g].run_ids) {
      const auto rows = store.query("SELECT name, value FROM summaries WHERE run_id = ? AND name LIKE ? "
                                    "AND name NOT LIKE '%@%' AND value IS NOT NULL",
                                    {run, "%:%" + suffix});
      std::map<int64_t, std::vector<double>> per_x;  // this run's splits at each x
      for (const auto& row : rows.rows) {
        const std::string& name = row[0].text;
        if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        const SplitId split = SplitId::parse(name.substr(0, name.size() - suffix.size()));
        if (split.kind != SplitId::Kind::Corruption) continue;
        if (suite_name.empty()) suite_name = split.base;
        if (split.base != suite_name) continue;
        const CorruptionSuite& suite = *find_suite(split.base).suite;
        const auto position = std::find(suite.corruptions.begin(), suite.corruptions.end(), split.corruption);
        const int64_t x = suite.severities > 1 ? split.severity
                                               : static_cast<int64_t>(position - suite.corruptions.begin());
        per_x[x].push_back(row[1].number());
      }
      for (const auto& [x, values] : per_x) by_group[g][x].push_back(summarise(values).mean);
    }
  }
  if (suite_name.empty()) {
    throw Error("plot flips: no run has routing_flip results (task.routing_replay: true with task.corruptions)");
  }
  const CorruptionSuite& suite = *find_suite(suite_name).suite;
  const bool severities = suite.severities > 1;
  const std::string base = request.output_dir + "/flips_" + suite.name;
  std::ofstream data(base + ".dat");
  data << "# " << (severities ? "severity" : "corruption") << " mean ci95_low ci95_high n: share of "
       << "tokens whose experts the corruption changed (mean over the layers"
       << (severities ? " and corruptions" : "") << "; per group the mean and 95% CI over runs)\n";
  std::string xtics = "  set xtics 1\n";
  if (!severities) {
    xtics = "  set xtics rotate by -45 (";
    for (size_t i = 0; i < suite.corruptions.size(); ++i) {
      xtics += fmt::format("{}{} {}", i == 0 ? "" : ", ", quote(suite.corruptions[i]), i);
    }
    xtics += ")\n";
  }
  std::string plot = fmt::format(
      "  set title {}\n  set xlabel {}\n  set ylabel \"routing flip (share of tokens)\"\n{}"
      "  set key below\n  set grid\n  set yrange [0:*]\n"
      "  set style fill transparent solid 0.2 noborder\n  plot ",
      quote(fmt::format("{}: {} routing flips (mean over layers; band: 95% CI over seeds)",
                        scope_of(request), suite.name)),
      quote(severities ? "severity" : "corruption"), xtics);
  int index = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (by_group[g].empty()) continue;
    data << "# " << groups[g].label << "\n";
    for (const auto& [x, values] : by_group[g]) write_ci_row(data, x, values);
    data << "\n\n";
    plot += band_and_line(base, index, groups[g].label);
    ++index;
  }
  data.close();
  if (index == 0) throw Error(fmt::format("plot flips: no run has {} routing_flip results", suite.name));
  return finish(request, base, plot + "\n");
}

// Expert x label specialisation per group from the runs' last routing trace of one MoE layer
// (train.trace_every): the share of each label's assignments that each expert took, averaged
// over the group's runs; the groups side by side on one colour scale.
std::vector<std::string> specialisation(Store& store, const PlotRequest& request,
                                        const std::vector<RunGroup>& groups) {
  const std::string base = request.output_dir + "/specialisation";
  std::ofstream data(base + ".dat");
  std::vector<std::string> labels;
  int64_t layer = request.layer;
  for (const auto& group : groups) {
    std::map<int64_t, std::map<int64_t, std::vector<double>>> shares;  // label -> expert -> runs
    for (int64_t run : group.run_ids) {
      const auto traced = store.query(
          "SELECT r.config_hash, r.config_yaml, m.step, m.name FROM runs r JOIN metrics m ON m.run_id = r.id "
          "WHERE r.id = ? AND m.split = 'probe' AND m.name LIKE 'moe/l%/trace_tokens' ORDER BY m.step DESC",
          {run});
      if (traced.rows.empty()) continue;
      const int64_t last_step = traced.rows[0][2].integer;
      int64_t run_layer = layer;
      if (run_layer < 0) {  // the deepest traced layer
        for (const auto& row : traced.rows) {
          if (row[2].integer == last_step) run_layer = std::max(run_layer, layer_of(row[3].text).value_or(-1));
        }
      }
      const RunConfig config = parse_run_config(traced.rows[0][1].text, fmt::format("run {}'s config", run));
      const LayerTrace trace = read_layer_trace(trace_dir(config.checkpoint_dir, traced.rows[0][0].text),
                                                last_step, run_layer);
      if (layer < 0) layer = run_layer;
      std::map<int64_t, std::map<int64_t, double>> counts;  // label -> expert -> assignments
      std::map<int64_t, double> totals;
      const auto experts = trace.experts.accessor<int64_t, 2>();
      const auto token_labels = trace.labels.accessor<int64_t, 1>();
      for (int64_t t = 0; t < trace.experts.size(0); ++t) {
        for (int64_t s = 0; s < trace.experts.size(1) && experts[t][s] >= 0; ++s) {
          counts[token_labels[t]][experts[t][s]] += 1;
          totals[token_labels[t]] += 1;
        }
      }
      const int64_t choices = routed_experts(config.model.moe);
      for (const auto& [label, total] : totals) {
        for (int64_t e = 0; e < choices; ++e) shares[label][e].push_back(counts[label][e] / total);
      }
    }
    if (shares.empty()) continue;
    data << "# " << group.label << "\n";
    for (const auto& [expert, unused] : shares.begin()->second) {
      (void)unused;
      for (const auto& [label, experts] : shares) {
        const auto found = experts.find(expert);
        data << expert << " " << label << " " << (found == experts.end() ? 0.0 : summarise(found->second).mean) << "\n";
      }
      data << "\n";
    }
    data << "\n";
    labels.push_back(group.label);
  }
  data.close();
  if (labels.empty()) {
    throw Error("plot specialisation: no run has a routing trace (train.trace_every > 0 keeps one "
                "at the end of training)");
  }
  const std::string body = heatmap_panels(
      std::filesystem::path(base).filename().string() + ".dat", labels,
      fmt::format("{}: block {}, share of each label's assignments per expert at the last trace "
                  "(mean over seeds)",
                  scope_of(request), layer),
      "expert", "label", "share of the label's assignments", 0.0, 1.0);
  return finish(request, base, body, panel_canvas(labels.size()));
}

}  // namespace

std::vector<std::string> make_plot(Store& store, const PlotRequest& request) {
  std::filesystem::create_directories(request.output_dir);
  const auto groups = group_runs(store, request);
  if (request.kind == "curves") return curves(store, request, groups);
  if (request.kind == "corruption") return corruption(store, request, groups);
  if (request.kind == "load") return load(store, request, groups);
  if (request.kind == "shares") return shares(store, request, groups);
  if (request.kind == "flips") return flips(store, request, groups);
  if (request.kind == "specialisation") return specialisation(store, request, groups);
  throw ConfigError(fmt::format("plot: unknown kind '{}' (curves, corruption, load, shares, flips, "
                                "specialisation)",
                                request.kind));
}

}  // namespace moelab
