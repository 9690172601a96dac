// Results database contract, on SQLite and on PostgreSQL (one test list, two engines):
// migration, read-only opens racing a database's creation, run round-trip, run statuses,
// failed runs, views, batches, the queue and its requeueing, db merge and db copy; then what
// only one engine has (SQLite's old schemas, PostgreSQL's URIs and servers).
#include "harness/store/store.h"
#include "harness/store/transfer.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "test_databases.h"
#include "test_util.h"

// One run of the test case per engine (skipped, with the reason, where there is no server).
#define MOELAB_FOR_EACH_ENGINE(databases)                                   \
  testing::TestDatabases databases(GENERATE(from_range(testing::engines()))); \
  if (!databases.available()) return;                                       \
  INFO("engine: " << databases.engine())

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

TEST_CASE("an empty database is migrated to the current schema", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string path =
      databases.postgres() ? databases.create("results") : databases.file("sub/results.db");
  {
    Store store(path);
    CHECK(store.schema_version() == Store::kSchemaVersion);
    auto tables = store.query(databases.postgres()
                                  ? "SELECT table_name FROM information_schema.tables WHERE "
                                    "table_schema = 'public' AND table_name <> 'moelab_schema' "
                                    "ORDER BY table_name"
                                  : "SELECT name FROM sqlite_master WHERE type IN ('table','view') "
                                    "ORDER BY name");
    std::vector<std::string> names;
    for (const auto& row : tables.rows) names.push_back(row[0].text);
    CHECK(names == std::vector<std::string>{"identity_changes", "latest_metrics", "launches",
                                            "metrics", "params", "run_files", "run_overview",
                                            "runs", "summaries", "sweep_members"});
    if (!databases.postgres()) CHECK(store.query("PRAGMA journal_mode").rows[0][0].text == "wal");
  }
  Store reopened(path);  // migrating an up-to-date database is a no-op
  CHECK(reopened.schema_version() == Store::kSchemaVersion);
}

// Forks `children` processes that all call body(child) at one moment (when a pipe's write end
// closes) and exit with its result; the number of them that did not exit 0.
namespace {
int failures_of_children_started_together(int children, const std::function<int(int)>& body) {
  int start[2];
  REQUIRE(pipe(start) == 0);
  std::vector<pid_t> pids;
  for (int child = 0; child < children; ++child) {
    const pid_t pid = fork();
    if (pid == 0) {
      close(start[1]);
      char byte;
      if (read(start[0], &byte, 1) != 0) _exit(2);
      _exit(body(child));
    }
    pids.push_back(pid);
  }
  close(start[0]);
  close(start[1]);
  int failures = 0;
  for (const pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    failures += WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  }
  return failures;
}
}  // namespace

TEST_CASE("processes creating one new database at the same moment all open it", "[store][.slow]") {
  testing::TempDir dir;
  int failures = 0;
  for (int round = 0; round < 100; ++round) {
    const std::string path = dir.file(fmt::format("new-{}.db", round));
    failures += failures_of_children_started_together(3, [&](int) {
      try {
        Store store(path);
        return store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 0 ? 0 : 1;
      } catch (const std::exception&) {
        return 1;  // "database is locked" from the switch to WAL, before it was retried
      }
    });
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
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string path = databases.create("new");
  open_connection(path, false)->set_schema_version(99);
  CHECK_THROWS_WITH(Store(path), Catch::Matchers::Contains("newer than this moelab") &&
                                     Catch::Matchers::Contains("schema version 99"));
  CHECK_THROWS_WITH(Store(path, Store::Access::ReadOnly), Catch::Matchers::Contains("newer than this moelab"));
}

TEST_CASE("a read-only open of a database being created waits for its first migration",
          "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string path = databases.postgres() ? databases.create("new") : databases.file("new.db");
  // A writer between creating the database and committing its first migration (issue 28: a
  // `moelab query` started with the sweeps creating results/moelab.db saw version 0 then).
  auto creator = open_connection(path, false);
  creator->begin(/*serialized=*/true);
  creator->execute_script("CREATE TABLE runs (id INTEGER)");
  auto reader = std::async(std::launch::async, [&] {
    Store store(path, Store::Access::ReadOnly);
    return store.schema_version();
  });
  CHECK(reader.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  creator->rollback();
  Store created(path);  // the creating writer's migration commits
  CHECK(reader.get() == Store::kSchemaVersion);
}

TEST_CASE("a read-only open of an empty database nobody creates or of an old one fails at once",
          "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string empty = databases.postgres() ? databases.create("empty") : databases.file("empty.db");
  if (!databases.postgres()) {
    std::ofstream file(empty);  // created an hour ago and never written since
    file.close();
    std::filesystem::last_write_time(empty,
                                     std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
  }
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(Store(empty, Store::Access::ReadOnly),
                    Catch::Matchers::Contains("'" + empty + "' is empty") &&
                        Catch::Matchers::Contains("write access"));
  const std::string old = databases.create("old");
  { Store migrated(old); }
  open_connection(old, false)->set_schema_version(4);
  CHECK_THROWS_WITH(Store(old, Store::Access::ReadOnly),
                    Catch::Matchers::Contains("schema version 4, older than this moelab's"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));  // no waiting
}

TEST_CASE("an empty database file whose creator stopped is waited for until the busy timeout "
          "has passed since it was written",
          "[store]") {
  testing::TempDir dir;
  const std::string path = dir.file("abandoned.db");
  std::ofstream file(path);  // a writer killed before its first migration committed
  file.close();
  const auto written = std::filesystem::file_time_type::clock::now() - kBusyTimeout + std::chrono::seconds(1);
  std::filesystem::last_write_time(path, written);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(Store(path, Store::Access::ReadOnly), Catch::Matchers::Contains("is empty"));
  CHECK(std::chrono::steady_clock::now() - start > std::chrono::milliseconds(500));
}

TEST_CASE("readers started with the writers creating a new database all read it",
          "[store][.slow]") {
  testing::TempDir dir;
  int failed_rounds = 0;
  for (int round = 0; round < 50; ++round) {
    const std::string path = dir.file(fmt::format("new-{}.db", round));
    const bool failed = failures_of_children_started_together(5, [&](int child) {
      try {
        if (child < 2) {  // writers: create and migrate it, as two sweeps do
          Store store(path);
          return 0;
        }
        // Readers (moelab query, report): as soon as the file is there.
        while (!std::filesystem::exists(path)) std::this_thread::sleep_for(std::chrono::microseconds(20));
        Store store(path, Store::Access::ReadOnly);
        return store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 0 ? 0 : 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "round %d, %s: %s\n", round, child < 2 ? "writer" : "reader", e.what());
        return 1;
      }
    }) > 0;
    failed_rounds += failed ? 1 : 0;
  }
  CHECK(failed_rounds == 0);
}

TEST_CASE("runs, params, metrics and summaries round-trip", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  Store store(databases.create("r"));
  const int64_t run = store.create_run(sample_record());
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "running");

  store.log_metrics(run, {{1, "train", "loss", 2.5}, {2, "train", "loss", 1.5},
                          {2, "val", "accuracy", 0.75}, {3, "train", "loss", std::nan("")}});
  store.finish_run(run, RunStatus::Done, {{"test/accuracy", 0.8}}, "", 12.0);

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
  CHECK(nlohmann::json::parse(overview.rows[0][0].text) == nlohmann::json{{"router.k", "2"}, {"seed", "5"}});
  CHECK(nlohmann::json::parse(overview.rows[0][1].text) == nlohmann::json{{"test/accuracy", 0.8}});
}

TEST_CASE("a failed run keeps its message and the database stays consistent", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  Store store(databases.create("f"));
  const int64_t run = store.create_run(sample_record());
  store.finish_run(run, RunStatus::Failed, {}, "out of memory at step 3");
  auto rows = store.query("SELECT status, error FROM runs WHERE id = " + std::to_string(run));
  CHECK(rows.rows[0][0].text == "failed");
  CHECK(rows.rows[0][1].text == "out of memory at step 3");
  CHECK_THROWS(store.query("UPDATE runs SET status = 'bogus'"));  // the schema's CHECK holds
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "failed");
  if (!databases.postgres()) CHECK(store.query("PRAGMA integrity_check").rows[0][0].text == "ok");
}

TEST_CASE("a batch of writes commits together or not at all", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string path = databases.create("r");
  Store store(path);
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
  Store other(path);  // and another connection sees every committed row
  CHECK(other.query("SELECT COUNT(*) FROM params").rows[0][0].integer == 3 * 2);
}

TEST_CASE("acquiring a dependency run: create, reuse, wait, take over a dead one, no retry",
          "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  Store store(databases.create("a"));
  const RunRecord record = sample_record();
  AcquiredRun first = store.acquire_run(record, "host:1", false);
  CHECK(first.claimed);
  CHECK(first.created);
  CHECK(first.status == RunStatus::Running);
  AcquiredRun second = store.acquire_run(record, "host:2", false);  // host:1 trains it
  CHECK_FALSE(second.claimed);
  CHECK(second.status == RunStatus::Running);
  CHECK(second.run_id == first.run_id);
  CHECK_FALSE(store.requeue_if_stale(first.run_id, 120.0));  // fresh heartbeat
  store.query("UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00Z'");
  CHECK(store.requeue_if_stale(first.run_id, 120.0));         // its process died
  AcquiredRun taken = store.acquire_run(record, "host:2", false);
  CHECK(taken.claimed);
  CHECK_FALSE(taken.created);
  CHECK(taken.run_id == first.run_id);
  CHECK(store.query("SELECT worker FROM runs").rows.at(0).at(0).text == "host:2");
  store.finish_run(taken.run_id, RunStatus::Failed, {}, "boom");
  AcquiredRun failed = store.acquire_run(record, "host:3", false);
  CHECK_FALSE(failed.claimed);
  CHECK(failed.status == RunStatus::Failed);
  CHECK(failed.error == "boom");
  AcquiredRun retried = store.acquire_run(record, "host:3", true);  // a new attempt
  CHECK(retried.claimed);
  CHECK(retried.created);
  CHECK(retried.run_id != first.run_id);
  store.finish_run(retried.run_id, RunStatus::Done, {});
  const AcquiredRun done = store.acquire_run(record, "host:4", false);
  CHECK_FALSE(done.claimed);
  CHECK(done.status == RunStatus::Done);
}

TEST_CASE("every run status is stored as the schema's text and read back as itself", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  Store store(databases.create("s"));
  RunRecord record = sample_record();
  record.sweep = "s";
  const std::vector<std::pair<RunStatus, std::string>> statuses = {
      {RunStatus::Pending, "pending"}, {RunStatus::Running, "running"},
      {RunStatus::Done, "done"},       {RunStatus::Failed, "failed"},
      {RunStatus::Diverged, "diverged"}, {RunStatus::Interrupted, "interrupted"}};
  std::map<RunStatus, int64_t> expected;
  for (const auto& [status, text] : statuses) {
    INFO(text);
    CHECK(run_status_text(status) == text);
    record.config_hash = text;
    const int64_t id = status == RunStatus::Pending ? store.enqueue_run(record) : store.create_run(record);
    if (status != RunStatus::Pending && status != RunStatus::Running) store.finish_run(id, status, {});
    CHECK(store.query("SELECT status FROM runs WHERE id = ?", {id}).rows.at(0).at(0).text == text);
    CHECK(store.run_for_hash(text)->status == status);
    expected[status] = 1;
  }
  CHECK((store.status_counts("s") == expected));
}

TEST_CASE("requeueing puts back to pending, with no worker, exactly the runs each call selects",
          "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  Store store(databases.create("q"));
  // Running runs of sweeps s and t held by workers w1 and w2, one of them stale; an
  // interrupted and a done run of s.
  auto add = [&](const std::string& sweep, const std::string& worker, RunStatus end) {
    RunRecord record = sample_record();
    record.sweep = sweep;
    const int64_t id = store.create_run(record);
    store.query("UPDATE runs SET worker = ? WHERE id = ?", {worker, id});
    if (end != RunStatus::Running) store.finish_run(id, end, {});
    return id;
  };
  const int64_t fresh = add("s", "w1", RunStatus::Running), stale = add("s", "w2", RunStatus::Running),
                other_sweep = add("t", "w1", RunStatus::Running),
                interrupted = add("s", "w3", RunStatus::Interrupted), done = add("s", "w3", RunStatus::Done);
  store.query("UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00Z' WHERE id = ?", {stale});
  const auto pending = [&] {
    std::set<int64_t> ids;
    for (const auto& row : store.query("SELECT id, worker FROM runs WHERE status = 'pending'").rows) {
      CHECK(row[1].text.empty());
      ids.insert(row[0].integer);
    }
    return ids;
  };
  CHECK(store.requeue_stale("t", 120.0) == 0);
  CHECK(store.requeue_stale("s", 120.0) == 1);
  CHECK(pending() == std::set<int64_t>{stale});
  CHECK(store.requeue_worker("w1") == 2);  // in every sweep
  CHECK(pending() == std::set<int64_t>{stale, fresh, other_sweep});
  CHECK(store.requeue_sweep("s", RunStatus::Running) == 0);
  CHECK(store.requeue_sweep("s", RunStatus::Interrupted) == 1);
  CHECK_FALSE(store.requeue_if(done, RunStatus::Interrupted));
  CHECK_FALSE(store.requeue_if_stale(done, 0.0));  // not running
  CHECK(pending() == std::set<int64_t>{stale, fresh, other_sweep, interrupted});
  CHECK(store.requeue_if(done, RunStatus::Done));
  CHECK((store.status_counts("s") == std::map<RunStatus, int64_t>{{RunStatus::Pending, 4}}));
}

}  // namespace moelab

namespace moelab {
namespace {

// A finished run with its params, three train metrics, a data file and its summaries.
int64_t add_run(Store& store, const std::string& hash, RunStatus status,
                std::vector<std::pair<std::string, double>> summaries) {
  RunRecord record;
  record.config_hash = hash;
  record.sweep = "s";
  record.task = "image";
  record.router = "topk";
  record.params = {{"router.name", "topk"}, {"seed", "0"}};
  const int64_t id = store.create_run(record);
  store.log_metrics(id, {{1, "train", "loss", 2.0}, {2, "train", "loss", 1.5}, {2, "val", "accuracy", 0.5}});
  store.record_resources(id, 100.0, {{"/data/train.gz", "abc123"}});
  if (status != RunStatus::Running) {
    store.finish_run(id, status, summaries, status == RunStatus::Done ? "" : "boom");
  }
  return id;
}

}  // namespace

TEST_CASE("db merge: runs from two databases, done duplicates kept once, conflicts reported",
          "[store][transfer]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string a = databases.create("a"), b = databases.create("b"), out = databases.create("out");
  int64_t a_parent = 0;
  {
    Store store(a);
    a_parent = add_run(store, "h1", RunStatus::Done, {{"test/accuracy", 0.8}, {"train/seconds", 10}});
    add_run(store, "h2", RunStatus::Failed, {});
    add_run(store, "h3", RunStatus::Running, {});  // a live queue's: not copied
    const int64_t child = add_run(store, "h4", RunStatus::Done, {{"test/accuracy", 0.7}});
    store.query("UPDATE runs SET parent_run_id = ? WHERE id = ?", {a_parent, child});
  }
  {
    Store store(b);
    add_run(store, "h5", RunStatus::Done, {{"test/accuracy", 0.6}});
    add_run(store, "h1", RunStatus::Done, {{"test/accuracy", 0.8}, {"train/seconds", 12}});  // timing only
    add_run(store, "h4", RunStatus::Done, {{"test/accuracy", 0.75}});                          // a conflict
  }
  const MergeReport report = merge_databases({a, b}, out);
  INFO(report.text());
  CHECK(report.copied == 4);  // a: h1, h2, h4; b: h5
  CHECK(report.duplicates == 2);
  CHECK(report.unfinished == 1);
  REQUIRE(report.conflicts.size() == 1);
  CHECK_THAT(report.conflicts[0], Catch::Matchers::Contains(b + " run 3") &&
                                      Catch::Matchers::Contains("test/accuracy 0.75 vs 0.7"));

  Store merged(out, Store::Access::ReadOnly);
  std::string runs;
  for (const auto& row : merged.query("SELECT config_hash, status FROM runs ORDER BY id").rows) {
    runs += (runs.empty() ? "" : " ") + row[0].text + ":" + row[1].text;
  }
  CHECK(runs == "h1:done h2:failed h4:done h5:done");
  // Everything hanging off a run came along, under its new id; the parent link followed.
  for (const char* table : {"params", "metrics", "run_files"}) {
    INFO(table);
    CHECK(merged.query(fmt::format("SELECT COUNT(DISTINCT run_id) FROM {}", table)).rows[0][0].integer == 4);
  }
  CHECK(merged.query("SELECT COUNT(*) FROM summaries").rows[0][0].integer == 2 + 1 + 1);  // h2 has none
  CHECK(merged.query("SELECT COUNT(*) FROM metrics").rows[0][0].integer == 12);
  CHECK(merged.query("SELECT value FROM metrics WHERE run_id = 4 AND step = 2 AND split = 'val'")
            .rows[0][0]
            .real == 0.5);
  CHECK(merged.query("SELECT sha256 FROM run_files WHERE run_id = 1").rows[0][0].text == "abc123");
  CHECK(merged.query("SELECT parent_run_id FROM runs WHERE config_hash = 'h4'").rows[0][0].integer ==
        merged.query("SELECT id FROM runs WHERE config_hash = 'h1'").rows[0][0].integer);
  CHECK(merged.query("SELECT value FROM summaries s JOIN runs r ON r.id = s.run_id WHERE "
                     "r.config_hash = 'h4' AND s.name = 'test/accuracy'")
            .rows[0][0]
            .real == 0.7);  // the first seen is kept

  // Merging the same databases again adds nothing.
  const MergeReport again = merge_databases({a, b}, out);
  CHECK(again.copied == 0);
  CHECK(again.duplicates == 6);

  // Through the command line, and its errors.
  const auto merged_cli = testing::run_moelab("db merge " + a + " " + b + " -o " + databases.create("cli"));
  CHECK(merged_cli.exit_code == 0);
  CHECK_THAT(merged_cli.output, Catch::Matchers::Contains("merged: 4 run(s) copied, 2 duplicate(s)"));
  const auto same = testing::run_moelab("db merge " + a + " -o " + a);
  CHECK(same.exit_code == 2);
  CHECK_THAT(same.output, Catch::Matchers::Contains("both an input and the output"));
  const std::string old = databases.create("old");
  { Store migrated(old); }
  open_connection(old, false)->set_schema_version(4);
  const std::string never = databases.create("never");
  const auto old_schema = testing::run_moelab("db merge " + a + " " + old + " -o " + never);
  CHECK(old_schema.exit_code == 2);
  CHECK_THAT(old_schema.output, Catch::Matchers::Contains(old) &&
                                    Catch::Matchers::Contains("schema version 4"));
  if (databases.postgres()) {
    CHECK(open_connection(never, true)->schema_version() == 0);  // nothing written
  } else {
    CHECK_FALSE(std::filesystem::exists(never));
  }
}

TEST_CASE("db copy: every run with its id, every query's result identical after a round trip "
          "SQLite -> engine -> SQLite",
          "[store][transfer]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string a = databases.file("a.db"), copy = databases.create("copy"),
                    back = databases.file("back.db");
  {
    Store store(a);
    const int64_t parent = add_run(store, "h1", RunStatus::Done, {{"test/accuracy", 0.8}});
    add_run(store, "h2", RunStatus::Failed, {});
    const int64_t child = add_run(store, "h3", RunStatus::Done, {{"test/accuracy", 0.7}});
    store.query("UPDATE runs SET parent_run_id = ? WHERE id = ?", {parent, child});
    store.query("DELETE FROM runs WHERE id = 2");  // ids with a gap stay as they are
  }
  CHECK(copy_database(a, copy) == 2);
  CHECK(copy_database(copy, back) == 2);
  const char* queries[] = {"SELECT * FROM runs ORDER BY id", "SELECT * FROM params ORDER BY run_id, key",
                           "SELECT * FROM metrics ORDER BY run_id, step, split, name",
                           "SELECT * FROM summaries ORDER BY run_id, name",
                           "SELECT * FROM run_files ORDER BY run_id", "SELECT * FROM run_overview ORDER BY id"};
  Store original(a, Store::Access::ReadOnly), round_trip(back, Store::Access::ReadOnly);
  for (const char* sql : queries) {
    INFO(sql);
    const auto x = original.query(sql), y = round_trip.query(sql);
    REQUIRE(x.rows.size() == y.rows.size());
    CHECK(x.columns == y.columns);
    for (size_t r = 0; r < x.rows.size(); ++r) {
      for (size_t c = 0; c < x.rows[r].size(); ++c) CHECK(x.rows[r][c].to_string() == y.rows[r][c].to_string());
    }
  }
  const auto refused = testing::run_moelab("db copy " + a + " " + copy);
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Catch::Matchers::Contains("already holds runs"));
  // New runs in the copy are numbered after the copied ones.
  Store copied(copy);
  CHECK(add_run(copied, "h9", RunStatus::Done, {}) == 4);
}

TEST_CASE("4 worker processes claim 50 queued runs: each run exactly once", "[store]") {
  MOELAB_FOR_EACH_ENGINE(databases);
  const std::string path = databases.create("queue");
  constexpr int kRuns = 50, kWorkers = 4;
  {
    Store store(path);
    store.batch([&] {
      for (int i = 0; i < kRuns; ++i) {
        RunRecord record = sample_record();
        record.sweep = "q";
        record.config_hash = fmt::format("h{}", i);
        store.enqueue_run(record);
      }
    });
  }
  std::vector<pid_t> children;
  for (int worker = 0; worker < kWorkers; ++worker) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // claims until the queue is empty, writing down what it got
      int status = 0;
      try {
        Store store(path);
        std::ofstream claims(databases.file(fmt::format("claims-{}", worker)));
        const std::string id = fmt::format("host:{}", getpid());
        while (auto claimed = store.claim_run("q", id)) {
          claims << claimed->run_id << "\n" << std::flush;
          store.finish_run(claimed->run_id, RunStatus::Done, {{"worker", worker}});
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %d: %s\n", worker, e.what());
        status = 1;
      }
      _exit(status);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  std::multiset<int64_t> claimed;
  for (int worker = 0; worker < kWorkers; ++worker) {
    std::ifstream claims(databases.file(fmt::format("claims-{}", worker)));
    for (int64_t id = 0; claims >> id;) claimed.insert(id);
  }
  CHECK(claimed.size() == kRuns);
  CHECK(std::set<int64_t>(claimed.begin(), claimed.end()).size() == kRuns);  // none twice
  Store store(path, Store::Access::ReadOnly);
  CHECK(store.query("SELECT COUNT(*) FROM runs WHERE status = 'done'").rows[0][0].integer == kRuns);
  CHECK(store.query("SELECT COUNT(*) FROM summaries").rows[0][0].integer == kRuns);  // one end each
}

TEST_CASE("PostgreSQL: a password in the URI, an unreachable server, refused credentials, "
          "a read-only store",
          "[store][postgres]") {
  const std::string reason = testing::postgres_skip_reason();
  if (!reason.empty()) {
    WARN("skipped: " << reason);
    return;
  }
  const std::string server = std::getenv("MOELAB_TEST_POSTGRES");  // postgresql://moelab@HOST:PORT/DB
  const std::string host_port = server.substr(server.find('@') + 1, server.rfind('/') - server.find('@') - 1);
  const std::string host = host_port.substr(0, host_port.find(':'));
  CHECK_THROWS_WITH(Store("postgresql://moelab:hunter2@" + host_port + "/moelab_test"),
                    Catch::Matchers::Contains("holds a password") && Catch::Matchers::Contains(".pgpass") &&
                        !Catch::Matchers::Contains("hunter2"));
  // A port nobody listens on: the host and port named, a ConfigError (exit 2).
  CHECK_THROWS_AS(Store("postgresql://moelab@" + host + ":1/moelab_test"), ConfigError);
  CHECK_THROWS_WITH(Store("postgresql://moelab@" + host + ":1/moelab_test"),
                    Catch::Matchers::Contains("host '" + host + "' port 1"));
  const char* role = std::getenv("MOELAB_TEST_POSTGRES_PW_ROLE");
  if (role != nullptr) {
    setenv("PGPASSWORD", "wrong", 1);
    CHECK_THROWS_WITH(Store(fmt::format("postgresql://{}@{}/moelab_test", role, host_port)),
                      Catch::Matchers::Contains("password authentication failed"));
    unsetenv("PGPASSWORD");
  }
  testing::TestDatabases databases("postgres");
  const std::string path = databases.create("ro");
  Store(path).create_run(sample_record());
  Store reader(path, Store::Access::ReadOnly);
  CHECK(reader.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 1);
  try {
    reader.query("DELETE FROM runs");
    FAIL("a read-only store wrote");
  } catch (const DatabaseError& e) {
    CHECK(e.kind() == DatabaseError::Kind::ReadOnly);
  }
  // Through the command line: unreachable is exit 2 with the host and port, nothing else.
  const auto unreachable = testing::run_moelab("query postgresql://moelab@" + host + ":1/x 'SELECT 1'");
  CHECK(unreachable.exit_code == 2);
  CHECK_THAT(unreachable.output, Catch::Matchers::Contains("port 1"));
  const auto dialect = testing::run_moelab("query " + path + " \"SELECT julianday('now')\"");
  CHECK(dialect.exit_code == 2);
  CHECK_THAT(dialect.output, Catch::Matchers::Contains("julianday"));
}

}  // namespace moelab
