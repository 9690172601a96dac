// A run's identity, built once at the run boundary and passed down to the trainer, the
// conversion and the metric log: the config, its hash, the run's row, its sweep and its
// checkpoint file. Nothing below the run boundary hashes a config again.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "harness/config/config.h"
#include "harness/train/checkpoint.h"

namespace moelab {

struct RunSpec {
  RunConfig config;
  std::string hash;        // config_hash(config): the run's identity
  std::string checkpoint;  // checkpoint_path(config.checkpoint_dir, hash)
  std::string sweep;       // "" for a lone run
  int64_t run_id = 0;      // 0 until the run has its row

  RunSpec(RunConfig run_config, std::string sweep_name)
      : RunSpec(std::move(run_config), std::move(sweep_name), "") {}
  // With the hash already at hand (a claimed queue row carries it).
  RunSpec(RunConfig run_config, std::string sweep_name, std::string known_hash)
      : config(std::move(run_config)),
        hash(known_hash.empty() ? config_hash(config) : std::move(known_hash)),
        checkpoint(checkpoint_path(config.checkpoint_dir, hash)),
        sweep(std::move(sweep_name)) {}
};

}  // namespace moelab
