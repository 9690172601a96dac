// Dense parents of converting runs, resolved by the scheduler before the converting run
// starts: a referenced done run, or (convert.parent = auto) the dense twin of the config,
// trained first through the run boundary like any run, or waited for while another process
// trains it. The run boundary receives the resolved parent; it never schedules one.
#pragma once

#include <string>

#include "harness/config/config.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "harness/train/run_spec.h"

namespace moelab {

// The done dense parent of a converting config. convert.parent = auto: the dense twin, run
// here first unless done (as a run of `sweep`, claimed for this process; a failed one is
// retried when `retry_failed`); while another process runs it, waits, and takes it over once
// its heartbeat is older than stale_after_seconds. Otherwise the referenced done run, checked
// to be a dense twin of the config (ConfigError). Throws when the parent cannot be had.
RunSpec resolve_dense_parent(const RunConfig& config, Store& store, const std::string& sweep,
                             bool retry_failed, double stale_after_seconds);

// `moelab run`: a lone run, after its dense parent when it converts (a parent that cannot be
// had throws before the run gets a row). See execute_run for `resume`.
RunOutcome run_alone(const RunConfig& config, bool resume = false,
                     double stale_after_seconds = kDefaultStaleSeconds);

}  // namespace moelab
