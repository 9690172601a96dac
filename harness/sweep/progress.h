// A sweep's progress line: counts by status, elapsed time and an ETA from the running runs'
// step rates and the mean length of a done run.
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"
#include "harness/sweep/queue.h"

namespace moelab {

// Seconds until the queue is empty: each running run ends at its own step rate, each pending
// one takes `run_seconds` and goes to the first worker free (list scheduling over `workers`).
// Negative when nothing is measured yet (no rate and no run length).
double estimate_eta(const std::vector<RunProgress>& running, int64_t pending, double run_seconds,
                    int64_t workers);

// Prints "sweep: 3/10 done | 2 running | ... | ETA 40s" to stderr: redrawn in place on a
// terminal (`interactive`), a line each time otherwise.
void print_progress(Store& store, const std::string& sweep, const QueueCounts& counts,
                    int64_t total, double seconds, int64_t workers, bool interactive);

}  // namespace moelab
