// Where a sweep's workers run: `local` (processes on this machine, sweep_runner.h) or `slurm`
// (one job array on a Slurm cluster, slurm.h). Set in the sweep file's `launcher:` section and
// on the command line (`--launcher slurm --partition gpu ...`, which win):
//
//   launcher:
//     name: slurm
//     partition: gpu
//     time: "04:00:00"      # sbatch --time
//     gres: "gpu:1"         # per array task
//     cpus_per_task: 8
//     mem: 32G
//     array_tasks: 16       # workers (0: one per run)
//     array_parallel: 8     # at most this many at once (0: as Slurm allows)
//     signal_seconds: 300   # the warning before the time limit: checkpoint and requeue
//     sbatch_args: "--account=lab --qos=normal"
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "harness/core/fields.h"

namespace moelab {

struct LauncherOptions {
  std::string name = "local";
  std::string partition;  // "": the cluster's default partition
  std::string time;       // "": the partition's default limit
  std::string gres;
  int64_t cpus_per_task = 1;
  std::string mem;
  int64_t array_tasks = 0;
  int64_t array_parallel = 0;
  int64_t signal_seconds = 120;
  std::string sbatch_args;
  std::string moelab;  // the moelab binary on the nodes; "": this one (a shared filesystem)

  template <class V>
  void visit(V& v) {
    v(name, "name", "where the workers run", one_of({"local", "slurm"}));
    v(partition, "partition", "slurm: sbatch --partition");
    v(time, "time", "slurm: sbatch --time, per array task (e.g. 04:00:00)");
    v(gres, "gres", "slurm: sbatch --gres, per array task (e.g. gpu:1)");
    v(cpus_per_task, "cpus_per_task", "slurm: CPUs per array task (the worker's threads)", at_least(1));
    v(mem, "mem", "slurm: sbatch --mem, per array task (e.g. 16G)");
    v(array_tasks, "array_tasks", "slurm: array tasks (workers); 0 = one per run", at_least(0));
    v(array_parallel, "array_parallel", "slurm: at most this many tasks at once; 0 = no limit", at_least(0));
    v(signal_seconds, "signal_seconds",
      "slurm: seconds before the time limit at which a worker checkpoints and requeues", at_least(10));
    v(sbatch_args, "sbatch_args", "slurm: more sbatch flags, space-separated");
    v(moelab, "moelab", "slurm: the moelab binary on the nodes (default: this one)");
  }
};

// The sweep file's `launcher:` section (an undefined node: defaults) with the command line's
// "key=value" settings over it; ConfigError with file:line:column or the option's name.
LauncherOptions read_launcher(YAML::Node section, const std::string& source,
                              const std::vector<std::string>& settings);

}  // namespace moelab
