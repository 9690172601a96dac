// `moelab plot`: figures rendered with gnuplot (Debian gnuplot-nox) to PNG and SVG, with the
// data (.dat) and the gnuplot script (.gp) written beside them so they can be restyled:
//   curves      a metric's history per group: mean over seeds with a min-max band (default:
//               the runs' main metric on val);
//   corruption  a suite's metric versus severity (0 = clean) per group, mean over the
//               corruptions and seeds (default: the first declared suite with severities);
//   load        per-layer expert-load heatmap (the last logged step) of each group's first run.
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct PlotRequest {
  std::string kind = "curves";
  std::string sweep;
  std::vector<std::string> group_by = {"router.name"};
  std::string metric;                   // curves: SPLIT/NAME of the metrics history; "" = main
  std::string suite;                    // corruption: a suite with severities; "" = the first
  std::string output_dir = "results/reports";
  bool render = true;                   // run gnuplot (false: data and script only)
};

// Returns the files written (data, script, and the PNG/SVG when rendered).
std::vector<std::string> make_plot(Store& store, const PlotRequest& request);

}  // namespace moelab
