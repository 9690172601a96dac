// Migration 7: runs recorded under another spelling of one meaning get that meaning's
// identity (harness/store/rehash.h).
#include <SQLiteCpp/Database.h>

#include <filesystem>
#include <fstream>

#include "harness/config/config.h"
#include "harness/store/store.h"
#include "test_util.h"

namespace moelab {
namespace {

// The canonical dump of the default config with these overrides, then one value respelled
// as an older moelab stored it.
std::string stored_yaml(const std::vector<std::string>& overrides, const std::string& canonical,
                        const std::string& old_spelling) {
  std::string yaml = canonical_yaml(parse_run_config("", "t.yaml", overrides));
  const auto at = yaml.find(canonical);
  REQUIRE(at != std::string::npos);
  return yaml.replace(at, canonical.size(), old_spelling);
}

}  // namespace

TEST_CASE("migration 7 gives runs recorded under other spellings the identity of their meaning",
          "[store][migration]") {
  testing::TempDir dir;
  const std::string db = dir.file("old.db"), checkpoints = dir.file("ckpt");
  std::filesystem::create_directories(checkpoints);
  const std::string at_dir = "checkpoint_dir=" + checkpoints;
  const RunConfig meaning = parse_run_config("", "t.yaml", {"model.moe.layers=1,3", at_dir});
  const RunConfig attack = parse_run_config("", "t.yaml", {"task.attacks=fgsm:eps=8/255", at_dir});
  {
    Store create(db);  // today's schema; then rolled back to version 6 with old rows
  }
  {
    SQLite::Database old(db, SQLite::OPEN_READWRITE);
    const auto insert = [&](const std::string& hash, const std::string& yaml) {
      SQLite::Statement row(old, "INSERT INTO runs (config_hash, task, router, seed, status, "
                                 "config_yaml) VALUES (?, 'image', 'topk', 0, 'done', ?)");
      row.bind(1, hash);
      row.bind(2, yaml);
      row.exec();
    };
    // Three spellings of blocks {1, 3} at depth 4, two of one radius, one config that no
    // longer parses.
    insert("old-a", stored_yaml({"model.moe.layers=1,3", at_dir}, "layers: \"every_other\"",
                                "layers: \"3, 1\""));
    insert("old-b", stored_yaml({"model.moe.layers=1,3", at_dir}, "layers: \"every_other\"",
                                "layers: \"1,3\""));
    insert(config_hash(meaning), canonical_yaml(meaning));
    insert("old-d", stored_yaml({"task.attacks=fgsm:eps=8/255", at_dir}, "fgsm:eps=8/255",
                                fmt::format("fgsm:eps={}", 8.0 / 255.0)));
    insert("old-e", "seed: 1\nretired_key: 3\n");
    old.exec("INSERT INTO params (run_id, key, value) VALUES (1, 'model.moe.layers', '3, 1')");
    old.exec("DROP TABLE identity_changes");  // as schema 6 had it
    old.exec("PRAGMA user_version = 6");
  }
  std::ofstream(checkpoints + "/old-a.pt") << "weights";

  Store store(db);  // migrates
  const auto rows = store.query("SELECT id, config_hash, config_yaml FROM runs ORDER BY id").rows;
  REQUIRE(rows.size() == 5);
  for (int i = 0; i < 3; ++i) {
    INFO("run " << i + 1);
    CHECK(rows[i][1].text == config_hash(meaning));
    CHECK(rows[i][2].text == canonical_yaml(meaning));
  }
  CHECK(rows[3][1].text == config_hash(attack));
  CHECK(rows[4][1].text == "old-e");  // kept: its config no longer parses
  const auto param = store.query("SELECT value FROM params WHERE run_id = 1 AND key = "
                                 "'model.moe.layers'").rows;
  REQUIRE(param.size() == 1);
  CHECK(param[0][0].text == "every_other");
  // The checkpoint follows the identity; the run of that meaning is found done.
  CHECK(std::filesystem::exists(checkpoints + "/" + config_hash(meaning) + ".pt"));
  CHECK_FALSE(std::filesystem::exists(checkpoints + "/old-a.pt"));
  const auto found = store.run_for_hash(config_hash(meaning));
  REQUIRE(found.has_value());
  CHECK(found->status == RunStatus::Done);
  CHECK(store.query("PRAGMA user_version").rows[0][0].integer == 7);
  // Every changed identity is recorded with its old hash.
  const auto changes = store.query("SELECT run_id, old_hash, new_hash FROM identity_changes "
                                   "ORDER BY run_id").rows;
  REQUIRE(changes.size() == 3);
  CHECK(changes[0][1].text == "old-a");
  CHECK(changes[1][1].text == "old-b");
  CHECK(changes[2][1].text == "old-d");
  CHECK(changes[2][2].text == config_hash(attack));
}

}  // namespace moelab
