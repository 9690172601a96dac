// Successive-halving decisions from recorded rung values.
#include "harness/sweep/asha.h"

#include <algorithm>
#include <cmath>

#include "harness/core/error.h"

namespace moelab {

std::vector<int64_t> rung_sizes(int64_t trials, const AshaSchedule& schedule) {
  MOELAB_CHECK(trials >= 1 && schedule.eta > 1, "rung_sizes: {} trials, eta {}", trials,
               schedule.eta);
  std::vector<int64_t> sizes = {trials};
  for (size_t i = 0; i < schedule.rungs.size(); ++i) {
    const auto next = static_cast<int64_t>(std::floor(static_cast<double>(sizes.back()) / schedule.eta));
    sizes.push_back(std::max<int64_t>(1, next));
  }
  return sizes;
}

RungDecision decide_at_rung(int64_t trial, const std::vector<RungValue>& recorded,
                            int64_t entering, int64_t promoted) {
  const auto own = std::find_if(recorded.begin(), recorded.end(),
                                [&](const RungValue& v) { return v.trial == trial; });
  MOELAB_CHECK(own != recorded.end(), "decide_at_rung: trial {} has no value at this rung", trial);
  MOELAB_CHECK(static_cast<int64_t>(recorded.size()) <= entering,
               "decide_at_rung: {} values at a rung that {} trials enter", recorded.size(), entering);
  const auto ahead = std::count_if(recorded.begin(), recorded.end(), [&](const RungValue& v) {
    return v.value < own->value || (v.value == own->value && v.trial < own->trial);
  });
  const int64_t unknown = entering - static_cast<int64_t>(recorded.size());
  if (ahead >= promoted) return RungDecision::Prune;            // already beaten by enough
  if (ahead + unknown < promoted) return RungDecision::Promote;  // no one left can push it out
  return RungDecision::Wait;
}

}  // namespace moelab
