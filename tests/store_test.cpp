// Results database: migration from an empty file, run round-trip, failed runs, views.
#include "harness/store/store.h"

#include <SQLiteCpp/Statement.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

namespace moelab {

namespace {
RunRecord sample_record() {
  RunRecord record;
  record.config_hash = "abc123";
  record.name = "sample";
  record.task = "image";
  record.router = "topk";
  record.seed = 5;
  record.config_yaml = "seed: 5\n";
  record.params = {{"seed", "5"}, {"router.k", "2"}};
  record.provenance.git_commit = "deadbeef";
  record.provenance.threads = 2;
  return record;
}
}  // namespace

TEST_CASE("an empty file is migrated to the current schema", "[store]") {
  testing::TempDir dir;
  const std::string path = dir.file("sub/results.db");
  {
    Store store(path);
    CHECK(store.schema_version() == Store::kSchemaVersion);
    auto tables = store.query(
        "SELECT name FROM sqlite_master WHERE type IN ('table','view') ORDER BY name");
    std::vector<std::string> names;
    for (const auto& row : tables.rows) names.push_back(row[0].text);
    CHECK(names == std::vector<std::string>{"latest_metrics", "metrics", "params", "run_files",
                                            "run_overview", "runs", "summaries",
                                            "sweep_members"});
    CHECK(store.query("PRAGMA journal_mode").rows[0][0].text == "wal");
  }
  Store reopened(path);  // migrating an up-to-date database is a no-op
  CHECK(reopened.schema_version() == Store::kSchemaVersion);
}

TEST_CASE("processes creating one new database at the same moment all open it", "[store][.slow]") {
  testing::TempDir dir;
  int failures = 0;
  for (int round = 0; round < 100; ++round) {
    const std::string path = dir.file(fmt::format("new-{}.db", round));
    int start[2];  // the children open the database when its write end closes: all at once
    REQUIRE(pipe(start) == 0);
    std::vector<pid_t> children;
    for (int child = 0; child < 3; ++child) {
      const pid_t pid = fork();
      if (pid == 0) {
        close(start[1]);
        char byte;
        if (read(start[0], &byte, 1) != 0) _exit(2);
        try {
          Store store(path);
          _exit(store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 0 ? 0 : 1);
        } catch (const std::exception&) {
          _exit(1);  // "database is locked" from the switch to WAL, before it was retried
        }
      }
      children.push_back(pid);
    }
    close(start[0]);
    close(start[1]);
    for (const pid_t pid : children) {
      int status = 0;
      waitpid(pid, &status, 0);
      failures += WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("a database of schema version 1 holding runs is migrated with its data intact",
          "[store]") {
  // The version-1 file format as shipped (tables and the view later migrations replace).
  testing::TempDir dir;
  const std::string path = dir.file("v1.db");
  {
    SQLite::Database old(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    old.exec(R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY, config_hash TEXT NOT NULL, sweep TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL DEFAULT '', task TEXT NOT NULL, router TEXT NOT NULL,
  seed INTEGER NOT NULL, status TEXT NOT NULL CHECK (status IN
    ('pending','running','done','failed','diverged','interrupted')),
  config_yaml TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  started_at TEXT, finished_at TEXT, heartbeat_at TEXT, wall_seconds REAL,
  git_commit TEXT NOT NULL DEFAULT '', git_dirty INTEGER NOT NULL DEFAULT 0,
  moelab_version TEXT NOT NULL DEFAULT '', torch_version TEXT NOT NULL DEFAULT '',
  compiler TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '',
  cpu_model TEXT NOT NULL DEFAULT '', gpu_model TEXT NOT NULL DEFAULT '',
  threads INTEGER NOT NULL DEFAULT 0, blas_threads INTEGER NOT NULL DEFAULT 0);
CREATE INDEX runs_by_hash ON runs(config_hash);
CREATE INDEX runs_by_sweep ON runs(sweep, status);
CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL, split TEXT NOT NULL, name TEXT NOT NULL, value REAL);
CREATE INDEX metrics_by_run ON metrics(run_id, split, name, step);
CREATE TABLE summaries (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name)) WITHOUT ROWID;
CREATE VIEW latest_metrics AS SELECT m.run_id, m.split, m.name, m.step, m.value FROM metrics m
JOIN (SELECT run_id, split, name, MAX(step) AS step FROM metrics GROUP BY run_id, split, name)
  last USING (run_id, split, name, step);
CREATE VIEW run_overview AS
SELECT r.id, r.name, r.sweep, r.status, r.task, r.router, r.seed, r.config_hash,
       r.started_at, r.finished_at, r.wall_seconds, r.error,
       (SELECT json_group_object(key, value) FROM params p WHERE p.run_id = r.id) AS params,
       (SELECT json_group_object(name, value) FROM summaries s WHERE s.run_id = r.id) AS summaries
FROM runs r;
INSERT INTO runs (id, config_hash, sweep, task, router, seed, status, config_yaml, wall_seconds)
  VALUES (7, 'abc123', 'old', 'image', 'ssr', 2, 'done', 'seed: 2', 12.5);
INSERT INTO params VALUES (7, 'router.name', 'ssr'), (7, 'router.p', '0.01');
INSERT INTO metrics VALUES (7, 10, 'train', 'loss', 1.5), (7, 20, 'train', 'loss', 0.75);
INSERT INTO summaries VALUES (7, 'test/accuracy', 0.875);
PRAGMA user_version = 1;
)sql");
  }
  Store store(path);
  CHECK(store.schema_version() == Store::kSchemaVersion);
  const auto run = store.query(
      "SELECT id, sweep, router, seed, status, wall_seconds, worker, axes, parent_run_id "
      "FROM runs");
  REQUIRE(run.rows.size() == 1);
  CHECK(run.rows[0][0].integer == 7);
  CHECK(run.rows[0][1].text == "old");
  CHECK(run.rows[0][2].text == "ssr");
  CHECK(run.rows[0][3].integer == 2);
  CHECK(run.rows[0][4].text == "done");
  CHECK(run.rows[0][5].real == 12.5);
  CHECK(run.rows[0][6].text.empty());                   // version 2's columns get defaults
  CHECK(run.rows[0][7].text.empty());
  CHECK(run.rows[0][8].type == Cell::Type::Null);       // version 3: no parent
  CHECK(store.summaries(7) == std::vector<std::pair<std::string, double>>{{"test/accuracy", 0.875}});
  const auto latest = store.query("SELECT step, value FROM latest_metrics WHERE run_id = 7");
  REQUIRE(latest.rows.size() == 1);
  CHECK(latest.rows[0][0].integer == 20);
  CHECK(latest.rows[0][1].real == 0.75);
  const auto overview = store.query(
      "SELECT json_extract(params, '$.\"router.p\"'), parent_run_id FROM run_overview");
  CHECK(overview.rows.at(0).at(0).text == "0.01");
  // The migrated file takes the newer features: a sweep reusing the old run.
  store.add_to_sweep("new", 7);
  CHECK(store.query("SELECT run_id FROM sweep_members WHERE sweep = 'new'").rows.at(0).at(0).integer == 7);
}

TEST_CASE("a database from a newer moelab is refused", "[store]") {
  testing::TempDir dir;
  const std::string path = dir.file("new.db");
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 99");
  }
  CHECK_THROWS_WITH(Store(path), Catch::Matchers::Contains("newer than this moelab"));
}

TEST_CASE("runs, params, metrics and summaries round-trip", "[store]") {
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  const int64_t run = store.create_run(sample_record());
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "running");

  store.log_metrics(run, {{1, "train", "loss", 2.5}, {2, "train", "loss", 1.5},
                          {2, "val", "accuracy", 0.75}, {3, "train", "loss", std::nan("")}});
  store.finish_run(run, "done", {{"test/accuracy", 0.8}}, "", 12.0);

  auto runs = store.query("SELECT status, config_hash, seed, git_commit, wall_seconds FROM runs");
  REQUIRE(runs.rows.size() == 1);
  CHECK(runs.rows[0][0].text == "done");
  CHECK(runs.rows[0][1].text == "abc123");
  CHECK(runs.rows[0][2].integer == 5);
  CHECK(runs.rows[0][3].text == "deadbeef");
  CHECK(runs.rows[0][4].real == 12.0);

  auto latest = store.query(
      "SELECT split, name, step, value FROM latest_metrics ORDER BY split, name");
  REQUIRE(latest.rows.size() == 2);
  CHECK(latest.rows[0][1].text == "loss");
  CHECK(latest.rows[0][2].integer == 3);
  CHECK(latest.rows[0][3].type == Cell::Type::Null);  // NaN is stored as NULL
  CHECK(latest.rows[1][3].real == 0.75);

  auto overview = store.query("SELECT params, summaries FROM run_overview");
  CHECK(overview.rows[0][0].text == R"({"router.k":"2","seed":"5"})");
  CHECK(overview.rows[0][1].text == R"({"test/accuracy":0.8})");
}

TEST_CASE("a failed run keeps its message and the database stays consistent", "[store]") {
  testing::TempDir dir;
  Store store(dir.file("f.db"));
  const int64_t run = store.create_run(sample_record());
  store.finish_run(run, "failed", {}, "out of memory at step 3");
  auto rows = store.query("SELECT status, error FROM runs WHERE id = " + std::to_string(run));
  CHECK(rows.rows[0][0].text == "failed");
  CHECK(rows.rows[0][1].text == "out of memory at step 3");
  CHECK_THROWS(store.finish_run(run, "bogus", {}));  // CHECK constraint on status
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "failed");
  CHECK(store.query("PRAGMA integrity_check").rows[0][0].text == "ok");
}

TEST_CASE("a batch of writes commits together or not at all", "[store]") {
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  auto runs = [&] { return store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer; };
  RunRecord second = sample_record();
  second.config_hash = "def456";
  CHECK_THROWS_WITH(store.batch([&] {
                      store.enqueue_run(sample_record());
                      store.enqueue_run(second);
                      throw Error("stopped half-way");
                    }),
                    "stopped half-way");
  CHECK(runs() == 0);  // neither insert survived
  store.batch([&] {
    store.enqueue_run(sample_record());
    store.enqueue_run(second);
  });
  CHECK(runs() == 2);
  store.enqueue_run(sample_record());  // outside a batch, a write commits on its own
  CHECK(runs() == 3);
  Store other(dir.file("r.db"));  // and another connection sees every committed row
  CHECK(other.query("SELECT COUNT(*) FROM params").rows[0][0].integer == 3 * 2);
}

TEST_CASE("acquiring a dependency run: create, reuse, wait, take over a dead one, no retry",
          "[store]") {
  testing::TempDir dir;
  Store store(dir.file("a.db"));
  const RunRecord record = sample_record();
  AcquiredRun first = store.acquire_run(record, "host:1", false);
  CHECK(first.status == "claimed");
  CHECK(first.created);
  AcquiredRun second = store.acquire_run(record, "host:2", false);  // host:1 trains it
  CHECK(second.status == "running");
  CHECK(second.run_id == first.run_id);
  CHECK_FALSE(store.requeue_if_stale(first.run_id, 120.0));  // fresh heartbeat
  store.database().exec("UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00Z'");
  CHECK(store.requeue_if_stale(first.run_id, 120.0));         // its process died
  AcquiredRun taken = store.acquire_run(record, "host:2", false);
  CHECK(taken.status == "claimed");
  CHECK_FALSE(taken.created);
  CHECK(taken.run_id == first.run_id);
  store.finish_run(taken.run_id, "failed", {}, "boom");
  AcquiredRun failed = store.acquire_run(record, "host:3", false);
  CHECK(failed.status == "failed");
  CHECK(failed.error == "boom");
  AcquiredRun retried = store.acquire_run(record, "host:3", true);  // a new attempt
  CHECK(retried.status == "claimed");
  CHECK(retried.created);
  CHECK(retried.run_id != first.run_id);
  store.finish_run(retried.run_id, "done", {});
  CHECK(store.acquire_run(record, "host:4", false).status == "done");
}

}  // namespace moelab
