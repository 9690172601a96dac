// `moelab plot`: figures rendered with gnuplot (Debian gnuplot-nox) to PNG (cairo) and SVG,
// with the data (.dat) and the gnuplot script (.gp) written beside them so they can be
// restyled; every figure's title names the sweep and the metric:
//   curves      a metric's history per group: mean over seeds with a translucent min-max
//               band (default: the runs' main metric on val);
//   corruption  a suite's metric versus severity (0 = clean) per group, mean over the
//               corruptions and seeds (default: the first declared suite with severities);
//   load        per-layer balance over training: a per-layer routing metric (--metric,
//               default load_max_over_mean) per block and logging step, mean over each
//               group's runs: one heatmap per group, side by side on one colour scale;
//   shares      expert-load shares per block at the last logged step, mean over each group's
//               runs: heatmaps side by side on one colour scale;
//   flips       a suite's routing_flip (task.routing_replay) versus severity, or per
//               corruption for a one-severity suite, per group (mean, 95% CI band);
//   specialisation  expert x label shares of one MoE layer (--layer, default the deepest
//               traced) from the runs' last routing trace (train.trace_every), one heatmap
//               per group on one colour scale.
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct PlotRequest {
  std::string kind = "curves";
  std::string sweep;
  std::vector<std::string> group_by = {"router.name"};
  std::string metric;                   // curves: SPLIT/NAME ("" = main); load: a layer metric
  std::string suite;                    // corruption, flips: a suite; "" = the first found
  int64_t layer = -1;                   // specialisation: a block index; -1 = the deepest traced
  std::string output_dir = "results/reports";
  bool render = true;                   // run gnuplot (false: data and script only)
};

// Returns the files written (data, script, and the PNG/SVG when rendered).
std::vector<std::string> make_plot(Store& store, const PlotRequest& request);

}  // namespace moelab
