// Sweeps on a Slurm cluster: the plan validated and queued in the results database, then one
// job array whose tasks each run `moelab sweep-worker --scheduled` until the queue is empty.
// The batch script is kept under results/slurm/<sweep>/ and the job recorded in the database
// (launches), for `moelab sweep status` and `moelab sweep cancel`. Slurm schedules; moelab
// only writes a batch script and calls sbatch, squeue, scancel.
//
// Time limits and preemption: the script asks for SIGUSR1 `signal_seconds` before the limit;
// the worker then stops after its current step (a checkpoint), puts its run back to pending
// and exits with kExitRequeue, and the script requeues its array task. SIGTERM (scancel,
// preemption) also checkpoints and returns the run to the queue.
#pragma once

#include <string>

#include "harness/sweep/sweep.h"
#include "harness/sweep/sweep_runner.h"

namespace moelab {

// Validates (sbatch --test-only), enqueues and submits. ConfigError before anything is
// enqueued when sbatch is missing, Slurm refuses the job (its message shown), or the database
// is an SQLite file on a network filesystem. Returns the exit code.
int submit_slurm_sweep(const SweepPlan& plan, const SweepOptions& options);

// The sweep's runs by state, its running runs with their workers, and its jobs as squeue
// sees them.
int slurm_sweep_status(const SweepPlan& plan);

// Cancels the sweep's jobs, waits for them to end, and puts the runs they held (running or
// interrupted) back to pending.
int slurm_sweep_cancel(const SweepPlan& plan);

// The batch script for `tasks` array tasks of the sweep (see above).
std::string slurm_batch_script(const SweepPlan& plan, const SweepOptions& options, int64_t tasks,
                               const std::string& log_folder);

// The kind of network filesystem with this statfs magic number ("nfs", "lustre", ...), or ""
// for a local one; and of the filesystem holding `path` (its nearest existing folder).
std::string network_filesystem_kind(unsigned long magic);
std::string network_filesystem_of(const std::string& path);

}  // namespace moelab
