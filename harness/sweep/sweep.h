// Sweep files: a base run config crossed with grid axes, zipped axes, search trials and seeds, minus
// excluded combinations, expanded and validated completely before anything runs.
//
//   name: routers_fmnist
//   extends: ../quickstart.yaml          # a run config (path relative to this file), and/or
//   base: {train: {steps: 500}}          # a mapping merged over it
//   grid:                                # cartesian product, in file order
//     router: [{name: topk, k: 2}, {name: base}]   # a mapping replaces the whole section
//     train.lr: [0.001, 0.002]
//   zip: {model.dim: [32, 64], model.heads: [2, 4]}  # advanced together
//   search: {method: random, trials: 8, space: {train.lr: {log_uniform: [1e-4, 1e-2]}}}
//                                        # seeded random trials, one more axis (search.h)
//   seeds: 3                             # or a list [0, 1, 2]
//   exclude: [{router.name: base, train.lr: 0.001}]
//   launcher: {name: slurm, partition: gpu}  # where the workers run (launcher.h)
//
// Command-line `key=a,b` adds a grid axis (Hydra style); `key=v` overrides every run; either
// replaces the file's axis for that key (a zipped key takes a single value); `seeds=N` or
// `seeds=a,b,c` replaces the file's seeds.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "harness/config/config.h"
#include "harness/sweep/launcher.h"

namespace moelab {

struct SweepRun {
  RunConfig config;
  std::vector<std::pair<std::string, std::string>> axes;  // (key, value as written), axis order
  std::string label() const;                               // "router=topk lr=0.001 seed=0"
};

struct SweepPlan {
  std::string name;
  std::vector<SweepRun> runs;
  LauncherOptions launcher;  // the file's `launcher:` with the command line's settings over it
};

// Throws ConfigError (file:line:column for the sweep file's own keys; the axis values of every
// invalid combination) before returning anything.
// launcher_settings: "key=value" from the command line over the file's `launcher:` section.
SweepPlan expand_sweep(const std::string& path, const std::vector<std::string>& overrides = {},
                       const std::vector<std::string>& launcher_settings = {});
SweepPlan expand_sweep_text(const std::string& yaml_text, const std::string& source_name,
                            const std::string& base_dir,
                            const std::vector<std::string>& overrides = {},
                            const std::vector<std::string>& launcher_settings = {});

}  // namespace moelab
