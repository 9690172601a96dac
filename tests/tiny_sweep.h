// A tiny sweep file for tests that plan or run sweeps: a 4-step image run as its base
// (base.yaml, db and checkpoints inside the test's folder) and the test's own body.
#pragma once

#include <fstream>
#include <string>

#include "test_util.h"

namespace moelab::testing {

inline constexpr const char* kTinySweepBase = R"(name: tiny
task: {name: image, train_limit: 256, val_size: 200}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
router: {name: topk, k: 2}
train: {steps: 4, batch_size: 16, log_every: 2, warmup_steps: 1}
eval: {max_examples: 100}
)";

// dir/sweep.yaml = "extends: base.yaml\n" + body (body's line 1 is the file's line 2); its path.
inline std::string write_sweep(const TempDir& dir, const std::string& body) {
  std::ofstream(dir.file("base.yaml")) << kTinySweepBase << "db: " << dir.file("s.db") << "\n"
                                       << "checkpoint_dir: " << dir.file("ckpt") << "\n";
  std::ofstream(dir.file("sweep.yaml")) << "extends: base.yaml\n" << body;
  return dir.file("sweep.yaml");
}

}  // namespace moelab::testing
