// `moelab route`: run one router's decisions on router logits from .npy files and describe
// them as JSON — the inspection tool for researchers and the base of golden tests. A stateful
// router (selection biases, quantile cutoffs, ReMoE's coefficient, StableMoE's counters) can
// start from a saved state (a run's checkpoint, or a file written by --save-state) and route
// several batches in sequence; its state is printed before and after each batch.
#pragma once

#include <string>
#include <vector>

namespace moelab {

struct RouteRequest {
  std::string router;
  std::vector<std::string> options;       // key=value router options (k=1, p=0.5, ...)
  std::vector<std::string> logits_paths;  // float32 [T, E] each; one batch (step) per file
  bool training = false;
  int64_t seed = 0;
  int64_t step = 1;                   // the first batch's step; each next batch is one later
  std::string state_path;             // "": a fresh router; else --save-state's file
  std::string checkpoint_path;        // "": none; else a run's checkpoint (<config hash>.pt)
  int64_t layer = -1;                 // with checkpoint_path: the block whose router to take
  std::string save_state_path;        // "": none; else where to write the final state
};

std::string route_json(const RouteRequest& request);  // throws ConfigError on bad input

}  // namespace moelab
