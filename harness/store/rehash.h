// Migration 7's data step: every run's identity recomputed from its stored config by this
// moelab's parser. Since migration 7 the small languages inside string fields are parsed into
// typed values written in one canonical spelling (docs/design.md, "One meaning, one
// spelling"), so a run recorded under another spelling of the same meaning (model.moe.layers
// "3, 1", task.attacks "fgsm:eps=0.0313725490196078") gets the hash that meaning has now,
// and a sweep finds it done instead of training it again. Only a run whose stored config
// spells one of those values otherwise than canonically is touched. Its config_yaml and
// params are rewritten to the canonical spelling, and its checkpoint file follows its new
// hash; the table identity_changes records its old and new hash. Runs whose hash does not
// change are left exactly as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/store/sql_connection.h"

namespace moelab {

struct RehashOutcome {
  int64_t rehashed = 0;   // rows whose hash changed
  int64_t unchanged = 0;  // rows whose hash stays
  std::vector<std::string> kept;  // "run N: why" for configs that no longer parse (hash kept)
};

// Inside the migration's transaction.
RehashOutcome rehash_runs(SqlConnection& db);

}  // namespace moelab
