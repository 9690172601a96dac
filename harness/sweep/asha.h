// Successive-halving decisions for a sweep's pruned search (`search.prune`, method asha): the
// promotion rule of asynchronous successive halving (ASHA; Li et al. 2020, MLSys, arXiv
// 1810.05934) — at each rung the best 1/eta of the trials that reach it go on — decided from
// the recorded metrics alone, as soon as they settle it. A trial whose place among the best is
// already certain goes on without waiting for the others, one that can no longer be among them
// stops, and any other waits (paused with its checkpoint) until enough of the rung is known.
// So the promoted set at every rung is the best floor(n / eta) (at least 1) of the n trials
// that enter it, whatever order the trials arrive in: a sweep stopped and restarted, or run
// with more workers, makes the same decisions. (Li et al.'s ASHA promotes a trial when it is
// among the best 1/eta of those seen so far, which can depend on arrival order.)
#pragma once

#include <cstdint>
#include <vector>

namespace moelab {

struct AshaSchedule {
  std::vector<int64_t> rungs;  // steps, increasing, each below train.steps
  double eta = 3.0;            // reduction factor, > 1
};

// How many trials enter each rung: n_0 = trials, n_{i+1} = max(1, floor(n_i / eta)); one
// entry per rung plus the last, the trials that run to train.steps.
std::vector<int64_t> rung_sizes(int64_t trials, const AshaSchedule& schedule);

// A trial's recorded value at a rung, oriented so that lower is better (a metric where
// higher is better is negated by the caller); ties go to the lower trial index.
struct RungValue {
  int64_t trial = 0;
  double value = 0.0;
};

enum class RungDecision { Promote, Prune, Wait };

// The decision for `trial` at a rung that `entering` trials reach and `promoted` of them
// leave, given the values recorded there so far (`recorded` includes the trial's own).
RungDecision decide_at_rung(int64_t trial, const std::vector<RungValue>& recorded,
                            int64_t entering, int64_t promoted);

}  // namespace moelab
