// Successive-halving decisions (harness/sweep/asha.h) on hand-made rung values: the rung sizes
// worked out by hand, the decisions at each moment of one arrival order, and for many arrival
// orders that nothing is promoted outside the full rung's best floor(n / eta) or pruned inside.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "harness/sweep/asha.h"

using namespace moelab;

TEST_CASE("rung sizes: each rung keeps floor(n / eta) of the trials that reach it, at least one",
          "[sweep][asha]") {
  CHECK(rung_sizes(9, {{100, 300}, 3.0}) == std::vector<int64_t>{9, 3, 1});
  CHECK(rung_sizes(8, {{100, 300}, 3.0}) == std::vector<int64_t>{8, 2, 1});  // floor(2/3) = 0 -> 1
  CHECK(rung_sizes(16, {{50, 100, 200}, 2.0}) == std::vector<int64_t>{16, 8, 4, 2});
  CHECK(rung_sizes(5, {{}, 3.0}) == std::vector<int64_t>{5});
}

TEST_CASE("a rung's decisions as its values arrive: promote when certain, prune when beaten, "
          "else wait", "[sweep][asha]") {
  // Nine trials enter, three go on; lower is better. The full rung's best three: trials 6
  // (0.1), 1 (0.2) and 4 (0.3).
  const std::vector<double> value = {0.9, 0.2, 0.5, 0.4, 0.3, 0.8, 0.1, 0.7, 0.6};
  std::vector<RungValue> recorded;
  auto at = [&](int64_t trial) { return decide_at_rung(trial, recorded, 9, 3); };
  recorded.push_back({4, value[4]});
  CHECK(at(4) == RungDecision::Wait);  // 8 trials still to come could all beat it
  for (int64_t t : {0, 1, 2, 3, 5, 6}) recorded.push_back({t, value[t]});
  // Seven known, two to come.
  CHECK(at(6) == RungDecision::Promote);  // 0 ahead + 2 unknown < 3
  CHECK(at(1) == RungDecision::Wait);     // 1 ahead + 2 unknown = 3
  CHECK(at(4) == RungDecision::Wait);     // 2 ahead + 2 unknown
  CHECK(at(3) == RungDecision::Prune);    // 6, 1 and 4 ahead
  CHECK(at(0) == RungDecision::Prune);
  recorded.push_back({7, value[7]});
  recorded.push_back({8, value[8]});
  CHECK(at(1) == RungDecision::Promote);
  CHECK(at(4) == RungDecision::Promote);
  CHECK(at(2) == RungDecision::Prune);
  CHECK(at(8) == RungDecision::Prune);
}

TEST_CASE("ties go to the lower trial index", "[sweep][asha]") {
  const std::vector<RungValue> recorded = {{3, 0.5}, {1, 0.5}, {2, 0.7}};
  CHECK(decide_at_rung(1, recorded, 3, 1) == RungDecision::Promote);
  CHECK(decide_at_rung(3, recorded, 3, 1) == RungDecision::Prune);
}

TEST_CASE("in any arrival order the decisions agree with the full rung's best floor(n / eta)",
          "[sweep][asha]") {
  std::mt19937 shuffle(7);
  std::uniform_real_distribution<double> draw(0.0, 1.0);
  for (int round = 0; round < 50; ++round) {
    const int64_t entering = 2 + round % 11, promoted = std::max<int64_t>(1, entering / 3);
    std::vector<double> value(static_cast<size_t>(entering));
    for (auto& v : value) v = round % 4 == 0 ? std::floor(draw(shuffle) * 3) : draw(shuffle);  // ties too
    std::vector<int64_t> rank(static_cast<size_t>(entering));
    std::iota(rank.begin(), rank.end(), 0);
    std::sort(rank.begin(), rank.end(), [&](int64_t a, int64_t b) {
      return value[a] < value[b] || (value[a] == value[b] && a < b);
    });
    const std::set<int64_t> best(rank.begin(), rank.begin() + promoted);
    std::vector<int64_t> order = rank;
    std::shuffle(order.begin(), order.end(), shuffle);
    std::vector<RungValue> recorded;
    for (int64_t arriving : order) {
      recorded.push_back({arriving, value[arriving]});
      for (const auto& known : recorded) {
        const RungDecision decision = decide_at_rung(known.trial, recorded, entering, promoted);
        INFO("round " << round << " trial " << known.trial << " after " << recorded.size());
        if (decision == RungDecision::Promote) CHECK(best.count(known.trial) == 1);
        if (decision == RungDecision::Prune) CHECK(best.count(known.trial) == 0);
      }
    }
    for (const auto& known : recorded) {  // once the rung is complete nothing waits
      CHECK(decide_at_rung(known.trial, recorded, entering, promoted) != RungDecision::Wait);
    }
  }
}
