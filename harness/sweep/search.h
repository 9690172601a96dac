// A sweep file's `search:` section: random search over a space of config keys, sampled from
// a seed so that the same file always gives the same trials (see sweep.h for the file).
//
//   search:
//     method: random                       # the one method so far
//     trials: 8
//     seed: 0                              # the sampler's seed (default 0), not a run seed
//     space:
//       train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
//       train.beta1: {uniform: [0.8, 0.95]}
//       train.warmup_steps: {int: [10, 100]}        # both ends included
//       router: {choice: [{name: topk, k: 2}, {name: ssr}]}
//
// Trial t's value of key K depends on (seed, K, t) only: adding a key to the space or trials
// to the search leaves the other values as they were. The trials are one more axis of the
// sweep, crossed with the grid and the seeds.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace moelab {

struct SearchTrials {
  std::vector<std::string> keys;                 // the space's keys, in file order
  std::vector<YAML::Node> key_nodes;             // where each key is written
  std::vector<std::vector<std::string>> values;  // [trial][key] the value as flow YAML
  std::vector<std::vector<std::string>> labels;  // [trial][key] the same, short, for display
  std::vector<std::string> origins;              // [key] where its distribution is written
};

// Parses `search` (of the file `source`) and draws its trials; ConfigError at the line and
// column of what is wrong.
SearchTrials sample_search(const YAML::Node& search, const std::string& source);

}  // namespace moelab
