// Run identities recomputed from the stored configs (migration 7).
#include "harness/store/rehash.h"

#include <fmt/format.h>

#include <filesystem>

#include "harness/config/config.h"
#include "harness/core/yaml_path.h"

namespace moelab {
namespace {

// Moves <checkpoint_dir>/<old hash>.pt to the new hash's name where the old one exists and
// the new one does not (a relative folder is taken from the working directory, as runs do).
void move_checkpoint(const RunConfig& config, const std::string& old_hash,
                     const std::string& new_hash) {
  const std::filesystem::path dir(config.checkpoint_dir);
  const auto from = dir / (old_hash + ".pt"), to = dir / (new_hash + ".pt");
  std::error_code error;
  if (std::filesystem::exists(from, error) && !std::filesystem::exists(to, error)) {
    std::filesystem::rename(from, to, error);  // best effort: a missing folder is no failure
  }
}

// The values whose spelling migration 7 made canonical.
const char* const kCanonicalizedKeys[] = {"model.moe.layers", "model.moe.null_experts",
                                          "task.attacks", "task.corruptions"};

// Whether the stored config spells one of those values otherwise than its canonical form
// (the one thing that changes a stored run's identity); a config that does not name them
// is left alone.
bool spelled_otherwise(const std::string& stored_yaml, RunConfig& config) {
  const YAML::Node stored = load_yaml(stored_yaml, "stored config");
  const auto canonical = list_fields(config);
  for (const char* key : kCanonicalizedKeys) {
    const YAML::Node value = yaml_at_path(stored, key);
    if (!value || !value.IsScalar()) continue;
    for (const auto& row : canonical) {
      if (row.path == key && row.value != value.Scalar()) return true;
    }
  }
  return false;
}

void rewrite_run(SqlConnection& db, int64_t run_id, const RunConfig& config,
                 const std::string& hash) {
  db.execute("UPDATE runs SET config_hash = ?, config_yaml = ? WHERE id = ?",
             {hash, canonical_yaml(config), run_id});
  db.execute("DELETE FROM params WHERE run_id = ?", {run_id});
  for (const auto& row : list_fields(const_cast<RunConfig&>(config))) {
    db.execute("INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)",
               {run_id, row.path, row.value});
  }
}

}  // namespace

RehashOutcome rehash_runs(SqlConnection& db) {
  RehashOutcome outcome;
  const QueryResult runs = db.query("SELECT id, config_yaml, config_hash FROM runs ORDER BY id", {});
  for (const auto& row : runs.rows) {
    const int64_t run_id = row[0].integer;
    RunConfig config;
    try {
      config = parse_run_config(row[1].text, fmt::format("run {}'s stored config", run_id));
    } catch (const ConfigError& e) {
      outcome.kept.push_back(fmt::format("run {}: {}", run_id, e.what()));
      continue;
    }
    const std::string hash = config_hash(config);
    if (hash == row[2].text || !spelled_otherwise(row[1].text, config)) {
      ++outcome.unchanged;
      continue;
    }
    rewrite_run(db, run_id, config, hash);
    db.execute("INSERT INTO identity_changes (run_id, old_hash, new_hash) VALUES (?, ?, ?)",
               {run_id, row[2].text, hash});
    move_checkpoint(config, row[2].text, hash);
    ++outcome.rehashed;
  }
  return outcome;
}

}  // namespace moelab
