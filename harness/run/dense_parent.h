// Resolving a converting run's dense parent, part of the run boundary: a parent that must be
// trained first runs through run_on_row like any run, before the child's own training.
#pragma once

#include <string>

#include "harness/config/config.h"
#include "harness/convert/conversion.h"
#include "harness/store/store.h"

namespace moelab {

// The done dense parent of a converting config: convert.parent = auto runs it first (as a run
// of `sweep`, claimed for this process; waits while another process runs it, and takes it
// over once its heartbeat is older than stale_after_seconds); otherwise the referenced done
// run, checked to be a dense twin of the config. Throws on failure.
DenseParent resolve_dense_parent(const RunConfig& config, Store& store, const std::string& sweep,
                                 bool retry_failed, double stale_after_seconds);

}  // namespace moelab
