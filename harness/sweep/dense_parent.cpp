// Dense parents of converting runs: found by reference, or (convert.parent = auto) trained
// here through the run boundary first, or waited for while another process trains them.
#include "harness/sweep/dense_parent.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "harness/core/interrupt.h"
#include "harness/train/checkpoint.h"
#include "harness/train/provenance.h"

namespace moelab {
namespace {

RunSpec referenced_parent(const RunConfig& config, Store& store) {
  const std::string& reference = config.convert.parent;
  const auto runs = store.done_runs_matching(reference);
  if (runs.size() != 1) {
    throw ConfigError(fmt::format(
        "convert.parent = \"{}\": {} done runs in '{}' match (need exactly one; give the run "
        "id or more of the config hash)",
        reference, runs.size(), config.db));
  }
  RunSpec parent(parse_run_config(runs[0].config_yaml, fmt::format("run {}", runs[0].run_id)),
                 "", runs[0].config_hash);
  parent.run_id = runs[0].run_id;
  const ModelConfig& a = parent.config.model;
  const ModelConfig& b = config.model;
  if (!moe_layer_indices(a).empty() || a.dim != b.dim || a.depth != b.depth ||
      a.heads != b.heads || a.ffn_hidden != b.ffn_hidden ||
      parent.config.task.name != config.task.name) {
    throw ConfigError(fmt::format(
        "convert.parent = \"{}\": run {} is not a dense model of this shape (needs task {}, "
        "model.moe.layers none, dim {}, depth {}, heads {}, ffn_hidden {})",
        reference, parent.run_id, config.task.name, b.dim, b.depth, b.heads, b.ffn_hidden));
  }
  return parent;
}

void wait_a_moment() {
  for (int i = 0; i < 20; ++i) {
    if (interrupt_requested()) throw InterruptedError("interrupted while waiting for the dense parent");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

RunSpec resolve_dense_parent(const RunConfig& config, Store& store, const std::string& sweep,
                             bool retry_failed, double stale_after_seconds) {
  if (config.convert.parent != "auto") return referenced_parent(config, store);
  RunSpec parent(dense_parent_config(config), sweep);
  RunRecord record = make_run_record(parent);
  record.axes = kDenseParentLabel;
  const std::string& checkpoint = parent.checkpoint;
  while (true) {
    AcquiredRun acquired = store.acquire_run(record, worker_id(), retry_failed);
    parent.run_id = acquired.run_id;
    if (acquired.status == RunStatus::Done) {
      if (checkpoint_step(checkpoint) < 0) {
        throw Error(fmt::format("dense parent run {} is done but its checkpoint '{}' is missing",
                                acquired.run_id, checkpoint));
      }
      return parent;
    }
    if (!acquired.claimed && acquired.status == RunStatus::Running) {
      // Another process trains it; a dead one's is taken over.
      if (!store.requeue_if_stale(acquired.run_id, stale_after_seconds)) wait_a_moment();
      continue;
    }
    if (!acquired.claimed) {
      throw Error(fmt::format("dense parent run {} {}: {} (retry it: moelab sweep --retry-failed)",
                              acquired.run_id, run_status_text(acquired.status), acquired.error));
    }
    int64_t step = checkpoint_step(checkpoint);
    if (acquired.created && step >= 0) {
      std::filesystem::remove(checkpoint);  // left by an earlier, failed attempt
      step = -1;
    }
    if (!acquired.created) store.reopen_run(acquired.run_id, step, collect_provenance(parent.config));
    fmt::print(stderr, "dense parent: run {} ({} steps){}\n", acquired.run_id,
               parent.config.train.steps, step >= 0 ? fmt::format(", resuming at step {}", step) : "");
    const RunOutcome outcome = run_on_row(store, parent, step >= 0, nullptr);
    if (outcome.status == RunStatus::Done) return parent;
    if (outcome.status == RunStatus::Interrupted) throw InterruptedError("dense parent run interrupted");
    throw Error(fmt::format("dense parent run {} {}: {}", acquired.run_id, run_status_text(outcome.status),
                            outcome.error));
  }
}

RunOutcome run_alone(const RunConfig& config, bool resume, double stale_after_seconds) {
  if (config.convert.method == "none") return execute_run(config, resume);
  check_runnable(config);
  Store store(config.db);
  const RunSpec parent =
      resolve_dense_parent(config, store, "", /*retry_failed=*/true, stale_after_seconds);
  return execute_run(config, resume, &parent);
}

}  // namespace moelab
