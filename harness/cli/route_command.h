// `moelab route`: run one router's decision on router logits from a .npy file and describe
// it as JSON — the inspection tool for researchers and the base of golden tests.
#pragma once

#include <string>
#include <vector>

namespace moelab {

struct RouteRequest {
  std::string router;
  std::vector<std::string> options;  // key=value router options (k=1, p=0.5, ...)
  std::string logits_path;           // float32 [T, E]
  bool training = false;
  int64_t seed = 0;
  int64_t step = 1;
};

std::string route_json(const RouteRequest& request);  // throws ConfigError on bad input

}  // namespace moelab
