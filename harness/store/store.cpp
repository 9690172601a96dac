// SQLite store: migrations run in one IMMEDIATE transaction each, before any writer starts;
// metric batches go through one prepared statement inside one transaction; Store::batch
// groups many writes (enqueuing a sweep) into one transaction.
#include "harness/store/store.h"

#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {
namespace {

constexpr int64_t kBusyTimeoutMs = 30000;

// Busy handler: SQLite's own sleeps 1, 2, 5, 10, ... ms between retries, so a lock held for a
// fraction of a millisecond (another process's claim or connection start-up) cost up to 18 ms.
// This one sleeps 50 us, doubling up to 3.2 ms, then 5 ms per retry, for kBusyTimeoutMs in all.
int retry_when_busy(void*, int attempt) {
  constexpr int64_t kFirstUs = 50, kDoublings = 7, kLongestUs = 5000;
  const int64_t n = attempt;
  const int64_t slept_us = n <= kDoublings  // sum of the delays of the earlier attempts
                               ? kFirstUs * ((int64_t{1} << n) - 1)
                               : kFirstUs * ((int64_t{1} << kDoublings) - 1) +
                                     (n - kDoublings) * kLongestUs;
  if (slept_us >= kBusyTimeoutMs * 1000) return 0;  // SQLITE_BUSY goes to the caller
  const int64_t delay_us = n < kDoublings ? kFirstUs << n : kLongestUs;
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  return 1;
}

// Switching a new database to WAL needs an exclusive lock that SQLite does not wait for: when
// other processes open the same new file at that moment (a sweep's supervisor and its
// workers, two runs started at once) it returns SQLITE_BUSY without calling the busy handler
// (seen with SQLite 3.40 and 3.46). Retried here on the busy handler's schedule; once one
// connection has switched, the mode is in the file and the others need no lock.
void enable_wal(SQLite::Database& db) {
  for (int attempt = 0;; ++attempt) {
    try {
      db.exec("PRAGMA journal_mode=WAL");
      return;
    } catch (const SQLite::Exception& e) {
      if (e.getErrorCode() != SQLITE_BUSY || retry_when_busy(nullptr, attempt) == 0) throw;
    }
  }
}

// An IMMEDIATE transaction (the write lock taken up front, so no deadlock can arise), or
// nothing when the connection is already inside one (Store::batch): the writes then commit,
// or roll back, with the enclosing transaction.
class WriteTransaction {
 public:
  explicit WriteTransaction(SQLite::Database& db)
      : db_(db), owner_(sqlite3_get_autocommit(db.getHandle()) != 0) {
    if (owner_) db_.exec("BEGIN IMMEDIATE");
  }
  ~WriteTransaction() {
    if (owner_ && !committed_) {
      try {
        db_.exec("ROLLBACK");
      } catch (...) {  // destructors do not throw; SQLite already rolled back on error
      }
    }
  }
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  void commit() {
    if (!owner_) return;
    db_.exec("COMMIT");
    committed_ = true;
  }

 private:
  SQLite::Database& db_;
  bool owner_;
  bool committed_ = false;
};

// Migration N brings the schema from version N-1 to N. Append only; never edit a shipped one.
const char* const kMigrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE runs (
  id             INTEGER PRIMARY KEY,
  config_hash    TEXT NOT NULL,
  sweep          TEXT NOT NULL DEFAULT '',
  name           TEXT NOT NULL DEFAULT '',
  task           TEXT NOT NULL,
  router         TEXT NOT NULL,
  seed           INTEGER NOT NULL,
  status         TEXT NOT NULL CHECK (status IN
                   ('pending','running','done','failed','diverged','interrupted')),
  config_yaml    TEXT NOT NULL,
  error          TEXT NOT NULL DEFAULT '',
  created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  started_at     TEXT,
  finished_at    TEXT,
  heartbeat_at   TEXT,
  wall_seconds   REAL,
  git_commit     TEXT NOT NULL DEFAULT '',
  git_dirty      INTEGER NOT NULL DEFAULT 0,
  moelab_version TEXT NOT NULL DEFAULT '',
  torch_version  TEXT NOT NULL DEFAULT '',
  compiler       TEXT NOT NULL DEFAULT '',
  host           TEXT NOT NULL DEFAULT '',
  cpu_model      TEXT NOT NULL DEFAULT '',
  gpu_model      TEXT NOT NULL DEFAULT '',
  threads        INTEGER NOT NULL DEFAULT 0,
  blas_threads   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_hash ON runs(config_hash);
CREATE INDEX runs_by_sweep ON runs(sweep, status);

CREATE TABLE params (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key    TEXT NOT NULL,
  value  TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step   INTEGER NOT NULL,
  split  TEXT NOT NULL,
  name   TEXT NOT NULL,
  value  REAL
);
CREATE INDEX metrics_by_run ON metrics(run_id, split, name, step);

CREATE TABLE summaries (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name   TEXT NOT NULL,
  value  REAL,
  PRIMARY KEY (run_id, name)
) WITHOUT ROWID;

-- The last logged value of every (run, split, metric).
CREATE VIEW latest_metrics AS
SELECT m.run_id, m.split, m.name, m.step, m.value
FROM metrics m
JOIN (SELECT run_id, split, name, MAX(step) AS step FROM metrics GROUP BY run_id, split, name) last
  USING (run_id, split, name, step);

-- One row per run: identity, status, its params and summaries as JSON objects.
CREATE VIEW run_overview AS
SELECT r.id, r.name, r.sweep, r.status, r.task, r.router, r.seed, r.config_hash,
       r.started_at, r.finished_at, r.wall_seconds, r.error,
       (SELECT json_group_object(key, value) FROM params p WHERE p.run_id = r.id) AS params,
       (SELECT json_group_object(name, value) FROM summaries s WHERE s.run_id = r.id) AS summaries
FROM runs r;
)sql",
    // 2: sweep queue (worker, axis labels), resources, data files
    R"sql(
ALTER TABLE runs ADD COLUMN worker TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN axes TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN peak_rss_mb REAL;
CREATE INDEX runs_by_worker ON runs(worker, status);

CREATE TABLE run_files (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  path   TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
)sql",
    // 3: a converted run's dense parent
    R"sql(
ALTER TABLE runs ADD COLUMN parent_run_id INTEGER REFERENCES runs(id);
DROP VIEW run_overview;
CREATE VIEW run_overview AS
SELECT r.id, r.name, r.sweep, r.status, r.task, r.router, r.seed, r.config_hash,
       r.started_at, r.finished_at, r.wall_seconds, r.error, r.parent_run_id,
       (SELECT json_group_object(key, value) FROM params p WHERE p.run_id = r.id) AS params,
       (SELECT json_group_object(name, value) FROM summaries s WHERE s.run_id = r.id) AS summaries
FROM runs r;
)sql",
    // 4: runs a sweep reuses from elsewhere (done in another sweep or a single run)
    R"sql(
CREATE TABLE sweep_members (
  sweep  TEXT NOT NULL,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  PRIMARY KEY (sweep, run_id)
) WITHOUT ROWID;
)sql",
    // 5: the BLAS and its kernels (results differ between BLAS cores)
    R"sql(
ALTER TABLE runs ADD COLUMN blas TEXT NOT NULL DEFAULT '';
)sql",
};

std::string now_sql() { return "strftime('%Y-%m-%dT%H:%M:%fZ','now')"; }

// Back to the queue: a running run whose heartbeat is older than the bound seconds.
constexpr const char* kRequeueStale =
    "UPDATE runs SET status = 'pending', worker = '' WHERE status = 'running' AND "
    "(julianday('now') - julianday(heartbeat_at)) * 86400.0 > ?1";

}  // namespace

std::string Cell::to_string() const {
  switch (type) {
    case Type::Null: return "NULL";
    case Type::Integer: return std::to_string(integer);
    case Type::Real: return fmt::format("{:.6g}", real);
    case Type::Text: return text;
  }
  return "";
}

namespace {

// Read-only: the file must exist, and is never created, migrated or switched to WAL. A WAL
// database on a read-only mount cannot get its shared-memory file; it is then read as the
// file stands (nothing can be writing to a read-only mount).
SQLite::Database open_read_only(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", path));
  }
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    db.execAndGet("PRAGMA user_version");  // opening is lazy: this reads the file
    return db;
  } catch (const SQLite::Exception& e) {
    const std::filesystem::path folder = std::filesystem::absolute(path).parent_path();
    const bool cannot_write = (e.getErrorCode() & 0xff) == SQLITE_CANTOPEN ||
                              (e.getErrorCode() & 0xff) == SQLITE_READONLY;
    if (!cannot_write || access(folder.c_str(), W_OK) == 0) throw;
    return SQLite::Database("file:" + path + "?immutable=1", SQLite::OPEN_READONLY | SQLite::OPEN_URI);
  }
}

SQLite::Database open_read_write(const std::string& path) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  return SQLite::Database(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
}

}  // namespace

Store::Store(const std::string& path, Access access) try
    : db_(access == Access::ReadOnly ? open_read_only(path) : open_read_write(path)) {
  sqlite3_busy_handler(db_.getHandle(), retry_when_busy, nullptr);
  if (access == Access::ReadOnly) {
    check_readable_schema();
    return;
  }
  enable_wal(db_);
  db_.exec("PRAGMA synchronous=NORMAL");
  db_.exec("PRAGMA foreign_keys=ON");
  migrate();
} catch (const SQLite::Exception& e) {
  throw_database_error(path, e);
} catch (const std::filesystem::filesystem_error& e) {
  throw ConfigError(fmt::format("results database '{}': {}", path, e.code().message()));
}

void throw_database_error(const std::string& path, const SQLite::Exception& e) {
  const std::string message = fmt::format("results database '{}': {}", path, e.what());
  const int code = e.getErrorCode();
  // Not a database, or not openable where it is: what the user named is wrong.
  if (code == SQLITE_NOTADB || code == SQLITE_CANTOPEN) throw ConfigError(message);
  throw Error(message);
}

int Store::schema_version() { return db_.execAndGet("PRAGMA user_version").getInt(); }

void Store::check_readable_schema() {
  const int version = schema_version();
  if (version > kSchemaVersion) throw_newer_schema(version);
  if (version < kSchemaVersion) {
    throw ConfigError(fmt::format("results database '{}' has schema version {}, older than this "
                                  "moelab's ({}); open it once with write access (moelab run, "
                                  "sweep, or query --write) to migrate it",
                                  db_.getFilename(), version, kSchemaVersion));
  }
}

void Store::throw_newer_schema(int version) {
  throw ConfigError(fmt::format("results database '{}' has schema version {}, newer than this "
                                "moelab ({}); upgrade moelab",
                                db_.getFilename(), version, kSchemaVersion));
}

void Store::migrate() {
  constexpr int kCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));
  static_assert(kCount == kSchemaVersion, "one migration per schema version");
  if (schema_version() == kSchemaVersion) return;  // current: no write lock needed
  // IMMEDIATE takes the write lock first, so two processes cannot both apply a migration.
  WriteTransaction transaction(db_);
  const int current = schema_version();
  if (current > kSchemaVersion) throw_newer_schema(current);
  for (int version = current + 1; version <= kSchemaVersion; ++version) {
    db_.exec(kMigrations[version - 1]);
    db_.exec(fmt::format("PRAGMA user_version = {}", version));
  }
  transaction.commit();
}

int64_t Store::create_run(const RunRecord& record) { return insert_run(record, "running"); }

void Store::batch(const std::function<void()>& writes) {
  WriteTransaction transaction(db_);
  writes();
  transaction.commit();
}

int64_t Store::enqueue_run(const RunRecord& record) { return insert_run(record, "pending"); }

int64_t Store::insert_run(const RunRecord& record, const std::string& status) {
  WriteTransaction transaction(db_);
  const int64_t run_id = insert_run_rows(record, status);
  transaction.commit();
  return run_id;
}

int64_t Store::insert_run_rows(const RunRecord& r, const std::string& status) {
  const bool running = status == "running";
  SQLite::Statement insert(db_, fmt::format(R"sql(
INSERT INTO runs (config_hash, sweep, name, task, router, seed, status, config_yaml, axes,
                  started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {0}, {0}))sql",
                                            running ? now_sql() : "NULL"));
  int i = 1;
  insert.bind(i++, r.config_hash);
  insert.bind(i++, r.sweep);
  insert.bind(i++, r.name);
  insert.bind(i++, r.task);
  insert.bind(i++, r.router);
  insert.bind(i++, static_cast<int64_t>(r.seed));
  insert.bind(i++, status);
  insert.bind(i++, r.config_yaml);
  insert.bind(i++, r.axes);
  insert.exec();
  const int64_t run_id = db_.getLastInsertRowid();
  if (running) write_provenance(run_id, r.provenance);

  SQLite::Statement param(db_, "INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)");
  for (const auto& [key, value] : r.params) {
    param.bind(1, static_cast<int64_t>(run_id));
    param.bind(2, key);
    param.bind(3, value);
    param.exec();
    param.reset();
  }
  return run_id;
}

AcquiredRun Store::acquire_run(const RunRecord& record, const std::string& worker,
                               bool retry_failed) {
  WriteTransaction transaction(db_);
  const auto state = run_for_hash(record.config_hash);
  const bool found = state.has_value();
  AcquiredRun acquired;
  if (found) acquired = {state->run_id, state->status, state->error, false};
  const bool failed = acquired.status == "failed" || acquired.status == "diverged";
  if (!found || (failed && retry_failed)) {
    acquired.run_id = insert_run_rows(record, "running");
    acquired.status = "claimed";
    acquired.created = true;
  } else if (acquired.status == "pending" || acquired.status == "interrupted") {
    acquired.status = "claimed";
  }
  if (acquired.status == "claimed") {
    SQLite::Statement update(db_, "UPDATE runs SET status = 'running', worker = ?, heartbeat_at = " +
                                      now_sql() + " WHERE id = ?");
    update.bind(1, worker);
    update.bind(2, static_cast<int64_t>(acquired.run_id));
    update.exec();
  }
  transaction.commit();
  return acquired;
}

void Store::set_parent(int64_t run_id, int64_t parent_run_id) {
  SQLite::Statement update(db_, "UPDATE runs SET parent_run_id = ? WHERE id = ?");
  update.bind(1, static_cast<int64_t>(parent_run_id));
  update.bind(2, static_cast<int64_t>(run_id));
  MOELAB_CHECK(update.exec() == 1, "run {} not found in the results database", run_id);
}

void Store::add_to_sweep(const std::string& sweep, int64_t run_id) {
  SQLite::Statement insert(db_, "INSERT OR IGNORE INTO sweep_members (sweep, run_id) VALUES (?, ?)");
  insert.bind(1, sweep);
  insert.bind(2, static_cast<int64_t>(run_id));
  insert.exec();
}

std::optional<RunState> Store::run_state(int64_t run_id) {
  SQLite::Statement select(db_, "SELECT id, status, sweep, error FROM runs WHERE id = ?");
  select.bind(1, static_cast<int64_t>(run_id));
  if (!select.executeStep()) return std::nullopt;
  return RunState{select.getColumn(0).getInt64(), select.getColumn(1).getString(),
                  select.getColumn(2).getString(), select.getColumn(3).getString()};
}

std::vector<ClaimedRun> Store::done_runs_matching(const std::string& reference) {
  const bool is_id = reference.find_first_not_of("0123456789") == std::string::npos;
  SQLite::Statement select(db_, is_id ? "SELECT id, config_yaml, config_hash FROM runs WHERE "
                                        "id = ? AND status = 'done'"
                                      : "SELECT id, config_yaml, config_hash FROM runs WHERE "
                                        "status = 'done' AND substr(config_hash, 1, length(?1)) "
                                        "= ?1 ORDER BY id");
  if (is_id) {
    select.bind(1, to_int64(reference, "run id"));
  } else {
    select.bind(1, reference);
  }
  std::vector<ClaimedRun> runs;
  while (select.executeStep()) {
    runs.push_back({select.getColumn(0).getInt64(), select.getColumn(1).getString(),
                    select.getColumn(2).getString()});
  }
  return runs;
}

std::vector<std::pair<std::string, double>> Store::summaries(int64_t run_id) {
  SQLite::Statement select(db_, "SELECT name, value FROM summaries WHERE run_id = ? AND "
                                "value IS NOT NULL ORDER BY name");
  select.bind(1, static_cast<int64_t>(run_id));
  std::vector<std::pair<std::string, double>> values;
  while (select.executeStep()) {
    values.emplace_back(select.getColumn(0).getString(), select.getColumn(1).getDouble());
  }
  return values;
}

std::vector<std::pair<std::string, double>> Store::metrics_at(int64_t run_id,
                                                              const std::string& split,
                                                              int64_t step) {
  SQLite::Statement select(db_, "SELECT name, value FROM metrics WHERE run_id = ? AND split = ? "
                                "AND step = ? AND value IS NOT NULL ORDER BY rowid");
  select.bind(1, static_cast<int64_t>(run_id));
  select.bind(2, split);
  select.bind(3, static_cast<int64_t>(step));
  std::vector<std::pair<std::string, double>> values;
  while (select.executeStep()) {
    values.emplace_back(select.getColumn(0).getString(), select.getColumn(1).getDouble());
  }
  return values;
}

void Store::delete_evaluations(int64_t run_id, int64_t step) {
  SQLite::Statement drop(db_, "DELETE FROM metrics WHERE run_id = ? AND step = ? AND split <> 'train'");
  drop.bind(1, static_cast<int64_t>(run_id));
  drop.bind(2, static_cast<int64_t>(step));
  drop.exec();
}

void Store::write_provenance(int64_t run_id, const Provenance& p) {
  SQLite::Statement update(db_, R"sql(
UPDATE runs SET git_commit = ?, git_dirty = ?, moelab_version = ?, torch_version = ?,
                compiler = ?, host = ?, cpu_model = ?, gpu_model = ?, threads = ?,
                blas_threads = ?, blas = ?
WHERE id = ?)sql");
  int i = 1;
  update.bind(i++, p.git_commit);
  update.bind(i++, p.git_dirty ? 1 : 0);
  update.bind(i++, p.moelab_version);
  update.bind(i++, p.torch_version);
  update.bind(i++, p.compiler);
  update.bind(i++, p.host);
  update.bind(i++, p.cpu_model);
  update.bind(i++, p.gpu_model);
  update.bind(i++, static_cast<int64_t>(p.threads));
  update.bind(i++, static_cast<int64_t>(p.blas_threads));
  update.bind(i++, p.blas);
  update.bind(i++, static_cast<int64_t>(run_id));
  update.exec();
}

std::optional<ClaimedRun> Store::claim_run(const std::string& sweep, const std::string& worker) {
  WriteTransaction transaction(db_);
  SQLite::Statement select(db_, "SELECT id, config_yaml, config_hash FROM runs WHERE sweep = ? "
                                "AND status = 'pending' ORDER BY id LIMIT 1");
  select.bind(1, sweep);
  if (!select.executeStep()) return std::nullopt;
  ClaimedRun claimed{select.getColumn(0).getInt64(), select.getColumn(1).getString(),
                     select.getColumn(2).getString()};
  select.reset();
  SQLite::Statement update(db_, "UPDATE runs SET status = 'running', worker = ?, started_at = " +
                                    now_sql() + ", heartbeat_at = " + now_sql() +
                                    ", finished_at = NULL, error = '' WHERE id = ?");
  update.bind(1, worker);
  update.bind(2, static_cast<int64_t>(claimed.run_id));
  update.exec();
  transaction.commit();
  return claimed;
}

void Store::heartbeat(int64_t run_id) {
  SQLite::Statement beat(db_, "UPDATE runs SET heartbeat_at = " + now_sql() + " WHERE id = ?");
  beat.bind(1, static_cast<int64_t>(run_id));
  beat.exec();
}

std::optional<RunState> Store::run_for_hash(const std::string& config_hash) {
  SQLite::Statement select(db_, "SELECT id, status, sweep, error FROM runs WHERE config_hash = ? "
                                "ORDER BY (status = 'done') DESC, id DESC LIMIT 1");
  select.bind(1, config_hash);
  if (!select.executeStep()) return std::nullopt;
  return RunState{select.getColumn(0).getInt64(), select.getColumn(1).getString(),
                  select.getColumn(2).getString(), select.getColumn(3).getString()};
}

void Store::requeue_run(int64_t run_id) {
  SQLite::Statement update(db_, "UPDATE runs SET status = 'pending', worker = '' WHERE id = ?");
  update.bind(1, static_cast<int64_t>(run_id));
  update.exec();
}

int64_t Store::requeue_stale(const std::string& sweep, double stale_seconds) {
  SQLite::Statement update(db_, std::string(kRequeueStale) + " AND sweep = ?2");
  update.bind(1, stale_seconds);
  update.bind(2, sweep);
  return update.exec();
}

bool Store::requeue_if_stale(int64_t run_id, double stale_seconds) {
  SQLite::Statement update(db_, std::string(kRequeueStale) + " AND id = ?2");
  update.bind(1, stale_seconds);
  update.bind(2, static_cast<int64_t>(run_id));
  return update.exec() == 1;
}

int64_t Store::requeue_worker(const std::string& worker) {
  SQLite::Statement update(db_, "UPDATE runs SET status = 'pending', worker = '' WHERE worker = ? "
                                "AND status = 'running'");
  update.bind(1, worker);
  return update.exec();
}

std::map<std::string, int64_t> Store::status_counts(const std::string& sweep) {
  SQLite::Statement select(db_, "SELECT status, COUNT(*) FROM runs WHERE sweep = ? GROUP BY status");
  select.bind(1, sweep);
  std::map<std::string, int64_t> counts;
  while (select.executeStep()) counts[select.getColumn(0).getString()] = select.getColumn(1).getInt64();
  return counts;
}

std::vector<std::string> Store::running_workers(const std::string& sweep) {
  SQLite::Statement select(db_, "SELECT DISTINCT worker FROM runs WHERE sweep = ? AND "
                                "status = 'running' AND worker != ''");
  select.bind(1, sweep);
  std::vector<std::string> workers;
  while (select.executeStep()) workers.push_back(select.getColumn(0).getString());
  return workers;
}

void Store::record_resources(int64_t run_id, double peak_rss_mb,
                             const std::vector<std::pair<std::string, std::string>>& files) {
  WriteTransaction transaction(db_);
  SQLite::Statement update(db_, "UPDATE runs SET peak_rss_mb = ? WHERE id = ?");
  update.bind(1, peak_rss_mb);
  update.bind(2, static_cast<int64_t>(run_id));
  update.exec();
  SQLite::Statement insert(db_, "INSERT OR REPLACE INTO run_files (run_id, path, sha256) "
                                "VALUES (?, ?, ?)");
  for (const auto& [path, sha256] : files) {
    insert.bind(1, static_cast<int64_t>(run_id));
    insert.bind(2, path);
    insert.bind(3, sha256);
    insert.exec();
    insert.reset();
  }
  transaction.commit();
}

void Store::log_metrics(int64_t run_id, const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  WriteTransaction transaction(db_);
  SQLite::Statement insert(db_,
                           "INSERT INTO metrics (run_id, step, split, name, value) "
                           "VALUES (?, ?, ?, ?, ?)");
  for (const auto& row : rows) {
    insert.bind(1, static_cast<int64_t>(run_id));
    insert.bind(2, static_cast<int64_t>(row.step));
    insert.bind(3, row.split);
    insert.bind(4, row.name);
    if (std::isfinite(row.value)) {
      insert.bind(5, row.value);
    } else {
      insert.bind(5);  // NULL: SQLite has no NaN
    }
    insert.exec();
    insert.reset();
  }
  SQLite::Statement beat(db_, "UPDATE runs SET heartbeat_at = " + now_sql() + " WHERE id = ?");
  beat.bind(1, static_cast<int64_t>(run_id));
  beat.exec();
  transaction.commit();
}

void Store::finish_run(int64_t run_id, const std::string& status,
                       const std::vector<std::pair<std::string, double>>& summaries,
                       const std::string& error, double wall_seconds) {
  WriteTransaction transaction(db_);
  SQLite::Statement insert(db_,
                           "INSERT OR REPLACE INTO summaries (run_id, name, value) VALUES (?, ?, ?)");
  for (const auto& [name, value] : summaries) {
    insert.bind(1, static_cast<int64_t>(run_id));
    insert.bind(2, name);
    if (std::isfinite(value)) {
      insert.bind(3, value);
    } else {
      insert.bind(3);
    }
    insert.exec();
    insert.reset();
  }
  SQLite::Statement update(db_, "UPDATE runs SET status = ?, error = ?, wall_seconds = ?, "
                                "finished_at = " + now_sql() + " WHERE id = ?");
  update.bind(1, status);
  update.bind(2, error);
  update.bind(3, wall_seconds);
  update.bind(4, static_cast<int64_t>(run_id));
  MOELAB_CHECK(update.exec() == 1, "run {} not found in the results database", run_id);
  transaction.commit();
}

std::optional<int64_t> Store::latest_unfinished_run(const std::string& config_hash) {
  SQLite::Statement select(db_,
                           "SELECT id FROM runs WHERE config_hash = ? AND status IN "
                           "('running', 'interrupted', 'failed', 'diverged') "
                           "ORDER BY id DESC LIMIT 1");
  select.bind(1, config_hash);
  if (!select.executeStep()) return std::nullopt;
  return select.getColumn(0).getInt64();
}

void Store::reopen_run(int64_t run_id, int64_t step, const Provenance& provenance) {
  WriteTransaction transaction(db_);
  write_provenance(run_id, provenance);
  SQLite::Statement drop(db_, "DELETE FROM metrics WHERE run_id = ? AND step > ?");
  drop.bind(1, static_cast<int64_t>(run_id));
  drop.bind(2, static_cast<int64_t>(step));
  drop.exec();
  SQLite::Statement drop_summaries(db_, "DELETE FROM summaries WHERE run_id = ?");
  drop_summaries.bind(1, static_cast<int64_t>(run_id));
  drop_summaries.exec();
  SQLite::Statement update(db_, "UPDATE runs SET status = 'running', error = '', finished_at = "
                                "NULL, heartbeat_at = " + now_sql() + " WHERE id = ?");
  update.bind(1, static_cast<int64_t>(run_id));
  MOELAB_CHECK(update.exec() == 1, "run {} not found in the results database", run_id);
  transaction.commit();
}

QueryResult query_database(SQLite::Database& db, const std::string& sql,
                           const std::vector<SqlParam>& params) {
  SQLite::Statement statement(db, sql);
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i + 1);
    std::visit(
        [&](const auto& value) {
          if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::monostate>) {
            statement.bind(index);
          } else {
            statement.bind(index, value);
          }
        },
        params[i]);
  }
  QueryResult result;
  for (int i = 0; i < statement.getColumnCount(); ++i) {
    result.columns.emplace_back(statement.getColumnName(i));
  }
  while (statement.executeStep()) {
    std::vector<Cell> row;
    for (int i = 0; i < statement.getColumnCount(); ++i) {
      SQLite::Column column = statement.getColumn(i);
      Cell cell;
      switch (column.getType()) {
        case SQLITE_INTEGER:
          cell.type = Cell::Type::Integer;
          cell.integer = column.getInt64();
          break;
        case SQLITE_FLOAT:
          cell.type = Cell::Type::Real;
          cell.real = column.getDouble();
          break;
        case SQLITE_NULL: break;
        default:
          cell.type = Cell::Type::Text;
          cell.text = column.getString();
      }
      row.push_back(std::move(cell));
    }
    result.rows.push_back(std::move(row));
  }
  return result;
}

bool is_timing_metric(const std::string& name) {
  const auto ends_with = [&](const std::string& end) {
    return name.size() >= end.size() && name.compare(name.size() - end.size(), end.size(), end) == 0;
  };
  return ends_with("seconds") || ends_with("steps_per_second") || ends_with("route_ms");
}

SqlParam param_of(const Cell& cell) {
  switch (cell.type) {
    case Cell::Type::Integer: return cell.integer;
    case Cell::Type::Real: return cell.real;
    case Cell::Type::Text: return cell.text;
    case Cell::Type::Null: break;
  }
  return std::monostate{};
}

QueryResult Store::query(const std::string& sql, const std::vector<SqlParam>& params) {
  return query_database(db_, sql, params);
}

QueryResult query_read_only(const std::string& path, const std::string& sql) {
  Store store(path, Store::Access::ReadOnly);
  try {
    return store.query(sql);
  } catch (const SQLite::Exception& e) {
    const bool write = (e.getErrorCode() & 0xff) == SQLITE_READONLY;
    throw ConfigError(fmt::format("query on '{}' failed: {}{}", path, e.what(),
                                  write ? " (the database is opened read-only: pass --write to "
                                          "change it)"
                                        : ""));
  }
}

std::string host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

std::string worker_id() { return fmt::format("{}:{}", host_name(), getpid()); }

}  // namespace moelab
