// A results database of done runs for the comparison and claims tests: topk (the baseline),
// ssr (better on every seed) and noisy_topk (within ±0.002) on seeds 1..6, hash on seeds 7..9.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "harness/store/store.h"
#include "test_util.h"

namespace moelab::testing::comparison_runs {

// Test accuracies over seeds 1..6 of the baseline, and what the others add to them.
inline const std::vector<double> kBaseline = {0.80, 0.82, 0.79, 0.85, 0.81, 0.83};
inline const std::vector<double> kSsrGain = {0.010, 0.012, 0.008, 0.015, 0.011, 0.009};  // all positive
inline const std::vector<double> kNoisyGain = {0.001, -0.002, 0.0005, -0.0012, 0.0015, -0.0004};
inline const std::vector<double> kLonely = {0.84, 0.86, 0.80};  // seeds 7..9: no baseline partner

struct RunSpecForTest {
  std::string router;
  int64_t seed;
  double accuracy;
  std::map<std::string, std::string> extra;  // params beyond router.name, seed, task.name
};

inline void add_done_run(Store& store, const RunSpecForTest& spec, int64_t index) {
  RunRecord record;
  record.config_hash = fmt::format("hash-{}", index);
  record.sweep = "s";
  record.task = "image";
  record.router = spec.router;
  record.seed = spec.seed;
  record.params = {{"router.name", spec.router},
                   {"seed", std::to_string(spec.seed)},
                   {"task.name", "image"},
                   {"train.lr", "0.001"},
                   // Outside a run's identity: may differ between partners.
                   {"threads", std::to_string(1 + index % 3)},
                   // A router option: differs between routers, as router sections do.
                   {"router.k", spec.router == "ssr" ? "1" : "2"}};
  for (const auto& [key, value] : spec.extra) {
    for (auto& param : record.params) {
      if (param.first == key) param.second = value;
    }
    if (std::none_of(record.params.begin(), record.params.end(),
                     [&](const auto& p) { return p.first == key; })) {
      record.params.emplace_back(key, value);
    }
  }
  store.finish_run(store.create_run(record), RunStatus::Done, {{"test/accuracy", spec.accuracy}});
}

inline std::vector<double> plus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> out;
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i] + b[i]);
  return out;
}

// The database of the main case: topk (baseline), ssr and noisy_topk on seeds 1..6, hash on
// seeds 7..9.
inline std::string standard_database(const testing::TempDir& dir) {
  const std::string db = dir.path() + "/results.db";
  Store store(db);
  int64_t index = 0;
  const auto ssr = plus(kBaseline, kSsrGain), noisy = plus(kBaseline, kNoisyGain);
  for (int64_t seed = 1; seed <= 6; ++seed) {
    const auto i = static_cast<size_t>(seed - 1);
    add_done_run(store, {"topk", seed, kBaseline[i], {}}, index++);
    add_done_run(store, {"ssr", seed, ssr[i], {}}, index++);
    add_done_run(store, {"noisy_topk", seed, noisy[i], {}}, index++);
  }
  for (int64_t seed = 7; seed <= 9; ++seed) {
    add_done_run(store, {"hash", seed, kLonely[static_cast<size_t>(seed - 7)], {}}, index++);
  }
  return db;
}

}  // namespace moelab::testing::comparison_runs
