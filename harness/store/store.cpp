// The results store on either engine: migrations in one serialized transaction each, before
// any writer starts (a read-only store waits for a database being created); metric batches
// and a run's end in one transaction each; Store::batch groups many writes (enqueuing a
// sweep) into one transaction. The SQL is written once: the migrations name their few
// engine-specific types as {tokens}, the statements use only SQL that SQLite and PostgreSQL
// both accept, with the clock expressions of sql_connection.h, and bind run statuses as the
// text of kRunStatusTexts, the one place a RunStatus becomes text and back.
#include "harness/store/store.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "harness/core/error.h"
#include "harness/core/parse.h"
#include "harness/store/rehash.h"

namespace moelab {
namespace {

// A write transaction, or nothing when the connection is already inside one (Store::batch):
// the writes then commit, or roll back, with the enclosing transaction. `serialized` for
// read-then-write decisions (see SqlConnection::begin).
class WriteTransaction {
 public:
  explicit WriteTransaction(SqlConnection& db, bool serialized = true)
      : db_(db), owner_(!db.in_transaction()) {
    if (owner_) db_.begin(serialized);
  }
  ~WriteTransaction() {
    if (owner_ && !committed_) {
      try {
        db_.rollback();
      } catch (...) {  // destructors do not throw; the engine already rolled back on error
      }
    }
  }
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  void commit() {
    if (!owner_) return;
    db_.commit();
    committed_ = true;
  }

 private:
  SqlConnection& db_;
  bool owner_;
  bool committed_ = false;
};

// Migration N brings the schema from version N-1 to N. Append only; never edit a shipped one.
// Tokens: {id} the run id column, {int} and {real} 64-bit numbers, {now} the UTC time as
// text, {rowid} SQLite's WITHOUT ROWID, {json_object} the JSON object aggregate.
const char* const kMigrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE runs (
  id             {id},
  config_hash    TEXT NOT NULL,
  sweep          TEXT NOT NULL DEFAULT '',
  name           TEXT NOT NULL DEFAULT '',
  task           TEXT NOT NULL,
  router         TEXT NOT NULL,
  seed           {int} NOT NULL,
  status         TEXT NOT NULL CHECK (status IN
                   ('pending','running','done','failed','diverged','interrupted')),
  config_yaml    TEXT NOT NULL,
  error          TEXT NOT NULL DEFAULT '',
  created_at     TEXT NOT NULL DEFAULT ({now}),
  started_at     TEXT,
  finished_at    TEXT,
  heartbeat_at   TEXT,
  wall_seconds   {real},
  git_commit     TEXT NOT NULL DEFAULT '',
  git_dirty      {int} NOT NULL DEFAULT 0,
  moelab_version TEXT NOT NULL DEFAULT '',
  torch_version  TEXT NOT NULL DEFAULT '',
  compiler       TEXT NOT NULL DEFAULT '',
  host           TEXT NOT NULL DEFAULT '',
  cpu_model      TEXT NOT NULL DEFAULT '',
  gpu_model      TEXT NOT NULL DEFAULT '',
  threads        {int} NOT NULL DEFAULT 0,
  blas_threads   {int} NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_hash ON runs(config_hash);
CREATE INDEX runs_by_sweep ON runs(sweep, status);

CREATE TABLE params (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key    TEXT NOT NULL,
  value  TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
) {rowid};

CREATE TABLE metrics (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step   {int} NOT NULL,
  split  TEXT NOT NULL,
  name   TEXT NOT NULL,
  value  {real}
);
CREATE INDEX metrics_by_run ON metrics(run_id, split, name, step);

CREATE TABLE summaries (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name   TEXT NOT NULL,
  value  {real},
  PRIMARY KEY (run_id, name)
) {rowid};

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
       (SELECT {json_object}(key, value) FROM params p WHERE p.run_id = r.id) AS params,
       (SELECT {json_object}(name, value) FROM summaries s WHERE s.run_id = r.id) AS summaries
FROM runs r;
)sql",
    // 2: sweep queue (worker, axis labels), resources, data files
    R"sql(
ALTER TABLE runs ADD COLUMN worker TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN axes TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN peak_rss_mb {real};
CREATE INDEX runs_by_worker ON runs(worker, status);

CREATE TABLE run_files (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  path   TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (run_id, path)
) {rowid};
)sql",
    // 3: a converted run's dense parent
    R"sql(
ALTER TABLE runs ADD COLUMN parent_run_id {int} REFERENCES runs(id);
DROP VIEW run_overview;
CREATE VIEW run_overview AS
SELECT r.id, r.name, r.sweep, r.status, r.task, r.router, r.seed, r.config_hash,
       r.started_at, r.finished_at, r.wall_seconds, r.error, r.parent_run_id,
       (SELECT {json_object}(key, value) FROM params p WHERE p.run_id = r.id) AS params,
       (SELECT {json_object}(name, value) FROM summaries s WHERE s.run_id = r.id) AS summaries
FROM runs r;
)sql",
    // 4: runs a sweep reuses from elsewhere (done in another sweep or a single run)
    R"sql(
CREATE TABLE sweep_members (
  sweep  TEXT NOT NULL,
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  PRIMARY KEY (sweep, run_id)
) {rowid};
)sql",
    // 5: the BLAS and its kernels (results differ between BLAS cores)
    R"sql(
ALTER TABLE runs ADD COLUMN blas TEXT NOT NULL DEFAULT '';
)sql",
    // 6: sweeps submitted to a batch scheduler (moelab sweep --launcher slurm)
    R"sql(
CREATE TABLE launches (
  id           {id},
  sweep        TEXT NOT NULL,
  launcher     TEXT NOT NULL,
  job_id       TEXT NOT NULL,
  script       TEXT NOT NULL,
  submitted_at TEXT NOT NULL DEFAULT ({now})
);
CREATE INDEX launches_by_sweep ON launches(sweep);
)sql",
    // 7: run identities from the canonical spelling of every value; the data step
    // (rehash_runs, harness/store/rehash.h) records here each run whose hash it changed
    R"sql(
CREATE TABLE identity_changes (
  run_id      {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  old_hash    TEXT NOT NULL,
  new_hash    TEXT NOT NULL,
  migrated_at TEXT NOT NULL DEFAULT ({now})
);
)sql",
};

// The migration whose data step recomputes every run's identity (rehash_runs).
constexpr int kRehashMigration = 7;

// A migration's text for the connection's engine.
std::string migration_sql(const SqlConnection& db, int version) {
  const bool sqlite = db.dialect() == Dialect::SQLite;
  return fmt::format(fmt::runtime(kMigrations[version - 1]),
                     fmt::arg("id", sqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY"),
                     fmt::arg("int", sqlite ? "INTEGER" : "BIGINT"),
                     fmt::arg("real", sqlite ? "REAL" : "DOUBLE PRECISION"),
                     fmt::arg("now", db.now_sql()), fmt::arg("rowid", sqlite ? "WITHOUT ROWID" : ""),
                     fmt::arg("json_object", sqlite ? "json_group_object" : "json_object_agg"));
}

// Every status with its text in `runs.status`: the one conversion, used by the two below.
constexpr std::pair<RunStatus, std::string_view> kRunStatusTexts[] = {
    {RunStatus::Pending, "pending"},   {RunStatus::Running, "running"},
    {RunStatus::Done, "done"},         {RunStatus::Failed, "failed"},
    {RunStatus::Diverged, "diverged"}, {RunStatus::Interrupted, "interrupted"},
};


// A status bound to a statement's placeholder, and one read from a result.
SqlParam status_param(RunStatus status) { return std::string(run_status_text(status)); }
RunStatus status_of(const Cell& cell) { return parse_run_status(cell.text); }

// A requeue_where condition: status ?2 (running) and a heartbeat older than ?3 seconds.
std::string stale_condition(const SqlConnection& db) {
  return "status = ?2 AND " + db.seconds_since_sql("heartbeat_at") + " > ?3";
}

// A number as a bound parameter.
SqlParam number(double value) {
  return std::isfinite(value) ? SqlParam(value) : SqlParam(std::monostate{});  // NaN: NULL
}

// INSERT INTO `into` ("table (columns)") of every row of `rows`, as multi-row statements of
// up to 200 rows: one round trip to a server per chunk instead of one per row.
void insert_rows(SqlConnection& db, const std::string& into, const std::vector<std::vector<SqlParam>>& rows) {
  constexpr size_t kRowsPerStatement = 200;
  for (size_t first = 0; first < rows.size(); first += kRowsPerStatement) {
    const size_t last = std::min(rows.size(), first + kRowsPerStatement);
    std::string sql = "INSERT INTO " + into + " VALUES ";
    std::vector<SqlParam> values;
    for (size_t i = first; i < last; ++i) {
      std::string placeholders;
      for (size_t column = 0; column < rows[i].size(); ++column) placeholders += column == 0 ? "?" : ", ?";
      sql += (i == first ? "(" : ", (") + placeholders + ")";
      values.insert(values.end(), rows[i].begin(), rows[i].end());
    }
    db.execute(sql, values);
  }
}

}  // namespace

RunStatus parse_run_status(std::string_view text) {
  std::string known;
  for (const auto& [status, status_text] : kRunStatusTexts) {
    if (status_text == text) return status;
    known += (known.empty() ? "" : ", ") + std::string(status_text);
  }
  throw Error(fmt::format("run status '{}' is not one of {}", text, known));
}

std::string_view run_status_text(RunStatus status) {
  for (const auto& [known, text] : kRunStatusTexts) {
    if (known == status) return text;
  }
  throw Error(fmt::format("run status {} has no text", static_cast<int>(status)));
}

std::string Cell::to_string() const {
  switch (type) {
    case Type::Null: return "NULL";
    case Type::Integer: return std::to_string(integer);
    case Type::Real: return fmt::format("{:.6g}", real);
    case Type::Text: return text;
  }
  return "";
}

Store::Store(const std::string& target, Access access)
    : db_(open_connection(target, access == Access::ReadOnly)) {
  if (access == Access::ReadOnly) {
    check_readable_schema();
  } else {
    migrate();
  }
}

int Store::schema_version() { return db_->schema_version(); }

void Store::check_readable_schema() {
  const int version = readable_schema_version();
  if (version > kSchemaVersion) throw_newer_schema(version);
  if (version < kSchemaVersion) {
    throw ConfigError(fmt::format("results database '{}' has schema version {}, older than this "
                                  "moelab's ({}); open it once with write access (moelab run, "
                                  "sweep, or query --write) to migrate it",
                                  path(), version, kSchemaVersion));
  }
}

// The schema version; for an empty database that a writer may be creating (readers started
// with the sweeps that create it), the version its first migration commits, polled for up to
// kBusyTimeout. ConfigError for an empty database nobody creates, or one still empty then.
int Store::readable_schema_version() {
  const auto deadline = std::chrono::steady_clock::now() + kBusyTimeout;
  while (true) {
    const bool empty = db_->empty();
    const bool creating = empty && db_->creation_under_way();
    const int version = schema_version();  // read after: a migration seen above is seen here
    if (version > 0 || !empty) return version;
    if (!creating) {
      throw ConfigError(fmt::format("results database '{}' is empty: no moelab is creating its "
                                    "tables; open it once with write access (moelab run, sweep, "
                                    "or query --write) to create them",
                                    path()));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(kBusyTimeout).count();
      throw ConfigError(fmt::format("results database '{}' is being created by another process, "
                                    "which has not committed its tables within {} s; try again "
                                    "once it has",
                                    path(), waited));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Store::throw_newer_schema(int version) {
  throw ConfigError(fmt::format("results database '{}' has schema version {}, newer than this "
                                "moelab ({}); upgrade moelab",
                                path(), version, kSchemaVersion));
}

namespace {

// What migration 7 changed, on stderr: a database shared by several people should not change
// identities silently.
void report_rehash(const std::string& database, const RehashOutcome& outcome) {
  if (outcome.rehashed > 0) {
    fmt::print(stderr,
               "moelab: results database '{}': {} run(s) recorded under another spelling of their "
               "config now have its canonical identity (old and new hashes in identity_changes)\n",
               database, outcome.rehashed);
  }
  for (const auto& kept : outcome.kept) {
    fmt::print(stderr, "moelab: results database '{}': kept the identity of {}\n", database, kept);
  }
}

}  // namespace

void Store::migrate() {
  constexpr int kCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));
  static_assert(kCount == kSchemaVersion, "one migration per schema version");
  const int seen = schema_version();
  if (seen > kSchemaVersion) throw_newer_schema(seen);
  if (seen == kSchemaVersion) return;  // current: no write lock needed
  // Serialized: two processes cannot both apply a migration.
  WriteTransaction transaction(*db_);
  const int current = schema_version();
  if (current > kSchemaVersion) throw_newer_schema(current);
  for (int version = current + 1; version <= kSchemaVersion; ++version) {
    db_->execute_script(migration_sql(*db_, version));
    if (version == kRehashMigration) report_rehash(path(), rehash_runs(*db_));
    db_->set_schema_version(version);
  }
  transaction.commit();
}

int64_t Store::create_run(const RunRecord& record) {
  return insert_run(record, RunStatus::Running);
}

void Store::batch(const std::function<void()>& writes) {
  WriteTransaction transaction(*db_);
  writes();
  transaction.commit();
}

int64_t Store::enqueue_run(const RunRecord& record) {
  return insert_run(record, RunStatus::Pending);
}

int64_t Store::insert_run(const RunRecord& record, RunStatus status) {
  WriteTransaction transaction(*db_, /*serialized=*/false);
  const int64_t run_id = insert_run_rows(record, status);
  transaction.commit();
  return run_id;
}

int64_t Store::insert_run_rows(const RunRecord& r, RunStatus status) {
  const bool running = status == RunStatus::Running;
  const std::string started = running ? db_->now_sql() : "NULL";
  const int64_t run_id =
      db_->query(fmt::format(R"sql(
INSERT INTO runs (config_hash, sweep, name, task, router, seed, status, config_yaml, axes,
                  started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {0}, {0}) RETURNING id)sql",
                             started),
                 {r.config_hash, r.sweep, r.name, r.task, r.router, r.seed, status_param(status),
                  r.config_yaml, r.axes})
          .rows.at(0)
          .at(0)
          .integer;
  if (running) write_provenance(run_id, r.provenance);
  std::vector<std::vector<SqlParam>> params;
  for (const auto& [key, value] : r.params) params.push_back({run_id, key, value});
  insert_rows(*db_, "params (run_id, key, value)", params);
  return run_id;
}

AcquiredRun Store::acquire_run(const RunRecord& record, const std::string& worker,
                               bool retry_failed) {
  WriteTransaction transaction(*db_);
  const auto state = run_for_hash(record.config_hash);
  const bool failed =
      state && (state->status == RunStatus::Failed || state->status == RunStatus::Diverged);
  AcquiredRun acquired;
  if (!state || (failed && retry_failed)) {
    acquired = {insert_run_rows(record, RunStatus::Running), RunStatus::Running, "",
                /*claimed=*/true, /*created=*/true};
    db_->execute("UPDATE runs SET worker = ? WHERE id = ?", {worker, acquired.run_id});
  } else if (state->status == RunStatus::Pending || state->status == RunStatus::Interrupted) {
    // Only if it still is: on PostgreSQL a sweep worker's claim (which takes no advisory lock)
    // may have taken the row since it was read; then that worker is training it.
    const int64_t claimed =
        db_->execute("UPDATE runs SET status = ?1, worker = ?2, heartbeat_at = " + db_->now_sql() +
                         " WHERE id = ?3 AND status IN (?4, ?5)",
                     {status_param(RunStatus::Running), worker, state->run_id,
                      status_param(RunStatus::Pending), status_param(RunStatus::Interrupted)});
    acquired = {state->run_id, RunStatus::Running, state->error, /*claimed=*/claimed == 1,
                /*created=*/false};
  } else {
    acquired = {state->run_id, state->status, state->error, /*claimed=*/false, /*created=*/false};
  }
  transaction.commit();
  return acquired;
}

void Store::set_parent(int64_t run_id, int64_t parent_run_id) {
  const int64_t changed =
      db_->execute("UPDATE runs SET parent_run_id = ? WHERE id = ?", {parent_run_id, run_id});
  MOELAB_CHECK(changed == 1, "run {} not found in the results database", run_id);
}

void Store::add_to_sweep(const std::string& sweep, int64_t run_id) {
  db_->execute("INSERT INTO sweep_members (sweep, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
               {sweep, run_id});
}

std::vector<ClaimedRun> Store::done_runs_matching(const std::string& reference) {
  const bool is_id = reference.find_first_not_of("0123456789") == std::string::npos;
  const auto rows =
      is_id ? db_->query("SELECT id, config_yaml, config_hash FROM runs WHERE id = ? AND "
                         "status = ?",
                         {to_int64(reference, "run id"), status_param(RunStatus::Done)})
            : db_->query(fmt::format("SELECT id, config_yaml, config_hash FROM runs WHERE status = "
                                     "? AND substr(config_hash, 1, {}) = ? ORDER BY id",
                                     reference.size()),
                         {status_param(RunStatus::Done), reference});
  std::vector<ClaimedRun> runs;
  for (const auto& row : rows.rows) runs.push_back({row[0].integer, row[1].text, row[2].text});
  return runs;
}

namespace {

std::vector<std::pair<std::string, double>> named_values(const QueryResult& result) {
  std::vector<std::pair<std::string, double>> values;
  for (const auto& row : result.rows) values.emplace_back(row[0].text, row[1].number());
  return values;
}

}  // namespace

std::vector<std::pair<std::string, double>> Store::summaries(int64_t run_id) {
  return named_values(db_->query("SELECT name, value FROM summaries WHERE run_id = ? AND "
                                 "value IS NOT NULL ORDER BY name",
                                 {run_id}));
}

std::vector<std::pair<std::string, double>> Store::metrics_at(int64_t run_id,
                                                              const std::string& split,
                                                              int64_t step) {
  return named_values(db_->query("SELECT name, value FROM metrics WHERE run_id = ? AND split = ? "
                                 "AND step = ? AND value IS NOT NULL ORDER BY name",
                                 {run_id, split, step}));
}

void Store::delete_evaluations(int64_t run_id, int64_t step) {
  db_->execute("DELETE FROM metrics WHERE run_id = ? AND step = ? AND split <> 'train'",
               {run_id, step});
}

void Store::write_provenance(int64_t run_id, const Provenance& p) {
  db_->execute(R"sql(
UPDATE runs SET git_commit = ?, git_dirty = ?, moelab_version = ?, torch_version = ?,
                compiler = ?, host = ?, cpu_model = ?, gpu_model = ?, threads = ?,
                blas_threads = ?, blas = ?
WHERE id = ?)sql",
               {p.git_commit, int64_t{p.git_dirty ? 1 : 0}, p.moelab_version, p.torch_version,
                p.compiler, p.host, p.cpu_model, p.gpu_model, p.threads, p.blas_threads, p.blas,
                run_id});
}

std::optional<ClaimedRun> Store::claim_run(const std::string& sweep, const std::string& worker) {
  // SQLite: the transaction's write lock excludes every other claim. PostgreSQL: the row is
  // locked, and a concurrent claim skips it for the next pending run instead of waiting.
  WriteTransaction transaction(*db_, /*serialized=*/false);
  const bool postgres = db_->dialect() == Dialect::PostgreSQL;
  const auto rows = db_->query(std::string("SELECT id, config_yaml, config_hash FROM runs WHERE "
                                           "sweep = ? AND status = ? ORDER BY id LIMIT 1") +
                                   (postgres ? " FOR UPDATE SKIP LOCKED" : ""),
                               {sweep, status_param(RunStatus::Pending)});
  if (rows.rows.empty()) return std::nullopt;
  const ClaimedRun claimed{rows.rows[0][0].integer, rows.rows[0][1].text, rows.rows[0][2].text};
  db_->execute("UPDATE runs SET status = ?, worker = ?, started_at = " + db_->now_sql() +
                   ", heartbeat_at = " + db_->now_sql() + ", finished_at = NULL, error = '' "
                   "WHERE id = ?",
               {status_param(RunStatus::Running), worker, claimed.run_id});
  transaction.commit();
  return claimed;
}

void Store::heartbeat(int64_t run_id) {
  db_->execute("UPDATE runs SET heartbeat_at = " + db_->now_sql() + " WHERE id = ?", {run_id});
}

std::optional<RunState> Store::run_for_hash(const std::string& config_hash) {
  const auto rows = db_->query("SELECT id, status, sweep, error FROM runs WHERE config_hash = ? "
                               "ORDER BY CASE WHEN status = ? THEN 0 ELSE 1 END, id DESC LIMIT 1",
                               {config_hash, status_param(RunStatus::Done)});
  if (rows.rows.empty()) return std::nullopt;
  const auto& row = rows.rows[0];
  return RunState{row[0].integer, status_of(row[1]), row[2].text, row[3].text};
}

// Every requeue: `condition` selects the runs, with placeholders ?2, ?3, ... for `values`.
int64_t Store::requeue_where(const std::string& condition, std::vector<SqlParam> values) {
  values.insert(values.begin(), status_param(RunStatus::Pending));
  return db_->execute("UPDATE runs SET status = ?1, worker = '' WHERE " + condition, values);
}

bool Store::requeue_if(int64_t run_id, RunStatus status) {
  return requeue_where("id = ?2 AND status = ?3", {run_id, status_param(status)}) == 1;
}

int64_t Store::requeue_stale(const std::string& sweep, double stale_seconds) {
  return requeue_where(stale_condition(*db_) + " AND sweep = ?4",
                       {status_param(RunStatus::Running), stale_seconds, sweep});
}

bool Store::requeue_if_stale(int64_t run_id, double stale_seconds) {
  return requeue_where(stale_condition(*db_) + " AND id = ?4",
                       {status_param(RunStatus::Running), stale_seconds, run_id}) == 1;
}

int64_t Store::requeue_worker(const std::string& worker) {
  return requeue_where("worker = ?2 AND status = ?3", {worker, status_param(RunStatus::Running)});
}

int64_t Store::requeue_sweep(const std::string& sweep, RunStatus status) {
  return requeue_where("sweep = ?2 AND status = ?3", {sweep, status_param(status)});
}

std::vector<RunProgress> Store::running_progress(const std::string& sweep) {
  const auto rows = db_->query(
      "SELECT (SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id AND m.split = 'train'), "
      "(SELECT CAST(value AS DOUBLE PRECISION) FROM params p WHERE p.run_id = r.id AND "
      "p.key = 'train.steps'), " +
          db_->seconds_since_sql("r.started_at") +
          " FROM runs r WHERE r.sweep = ?1 AND r.status = ?2 AND r.started_at IS NOT NULL",
      {sweep, status_param(RunStatus::Running)});
  std::vector<RunProgress> running;
  for (const auto& row : rows.rows) running.push_back({row[0].number(), row[1].number(), row[2].number()});
  return running;
}

double Store::mean_done_seconds(const std::string& sweep) {
  return db_->query("SELECT AVG(wall_seconds) FROM runs WHERE sweep = ?1 AND status = ?2 AND "
                    "wall_seconds > 0",
                    {sweep, status_param(RunStatus::Done)})
      .rows.at(0)[0]
      .number();
}

void Store::record_launch(const std::string& sweep, const Launch& launch) {
  db_->execute("INSERT INTO launches (sweep, launcher, job_id, script) VALUES (?, ?, ?, ?)",
               {sweep, launch.launcher, launch.job_id, launch.script});
}

std::vector<Launch> Store::launches(const std::string& sweep) {
  const auto rows = db_->query("SELECT launcher, job_id, script, submitted_at FROM launches "
                               "WHERE sweep = ? ORDER BY id",
                               {sweep});
  std::vector<Launch> out;
  for (const auto& row : rows.rows) out.push_back({row[0].text, row[1].text, row[2].text, row[3].text});
  return out;
}

std::map<RunStatus, int64_t> Store::status_counts(const std::string& sweep) {
  const auto rows =
      db_->query("SELECT status, COUNT(*) FROM runs WHERE sweep = ? GROUP BY status", {sweep});
  std::map<RunStatus, int64_t> counts;
  for (const auto& row : rows.rows) counts[status_of(row[0])] = row[1].integer;
  return counts;
}

std::vector<std::string> Store::running_workers(const std::string& sweep) {
  const auto rows = db_->query("SELECT DISTINCT worker FROM runs WHERE sweep = ? AND "
                               "status = ? AND worker != ''",
                               {sweep, status_param(RunStatus::Running)});
  std::vector<std::string> workers;
  for (const auto& row : rows.rows) workers.push_back(row[0].text);
  return workers;
}

void Store::record_resources(int64_t run_id, double peak_rss_mb,
                             const std::vector<std::pair<std::string, std::string>>& files) {
  WriteTransaction transaction(*db_, /*serialized=*/false);
  db_->execute("UPDATE runs SET peak_rss_mb = ? WHERE id = ?", {peak_rss_mb, run_id});
  for (const auto& [path, sha256] : files) {
    db_->execute("INSERT INTO run_files (run_id, path, sha256) VALUES (?, ?, ?) "
                 "ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256",
                 {run_id, path, sha256});
  }
  transaction.commit();
}

void Store::log_metrics(int64_t run_id, const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  WriteTransaction transaction(*db_, /*serialized=*/false);
  std::vector<std::vector<SqlParam>> values;
  for (const auto& row : rows) values.push_back({run_id, row.step, row.split, row.name, number(row.value)});
  insert_rows(*db_, "metrics (run_id, step, split, name, value)", values);
  heartbeat(run_id);
  transaction.commit();
}

void Store::finish_run(int64_t run_id, RunStatus status,
                       const std::vector<std::pair<std::string, double>>& summaries,
                       const std::string& error, double wall_seconds) {
  WriteTransaction transaction(*db_, /*serialized=*/false);
  for (const auto& [name, value] : summaries) {
    db_->execute("INSERT INTO summaries (run_id, name, value) VALUES (?, ?, ?) "
                 "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
                 {run_id, name, number(value)});
  }
  const int64_t changed = db_->execute("UPDATE runs SET status = ?, error = ?, wall_seconds = ?, "
                                       "finished_at = " + db_->now_sql() + " WHERE id = ?",
                                       {status_param(status), error, number(wall_seconds), run_id});
  MOELAB_CHECK(changed == 1, "run {} not found in the results database", run_id);
  transaction.commit();
}

std::optional<int64_t> Store::latest_unfinished_run(const std::string& config_hash) {
  const auto rows = db_->query("SELECT id FROM runs WHERE config_hash = ? AND status IN "
                               "(?, ?, ?, ?) ORDER BY id DESC LIMIT 1",
                               {config_hash, status_param(RunStatus::Running),
                                status_param(RunStatus::Interrupted),
                                status_param(RunStatus::Failed),
                                status_param(RunStatus::Diverged)});
  if (rows.rows.empty()) return std::nullopt;
  return rows.rows[0][0].integer;
}

void Store::reopen_run(int64_t run_id, int64_t step, const Provenance& provenance) {
  WriteTransaction transaction(*db_, /*serialized=*/false);
  write_provenance(run_id, provenance);
  db_->execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", {run_id, step});
  db_->execute("DELETE FROM summaries WHERE run_id = ?", {run_id});
  const int64_t changed = db_->execute("UPDATE runs SET status = ?, error = '', "
                                       "finished_at = NULL, heartbeat_at = " + db_->now_sql() +
                                       " WHERE id = ?",
                                       {status_param(RunStatus::Running), run_id});
  MOELAB_CHECK(changed == 1, "run {} not found in the results database", run_id);
  transaction.commit();
}

QueryResult Store::query(const std::string& sql, const std::vector<SqlParam>& params) {
  return db_->query(sql, params);
}

void Store::continue_run_ids() { db_->continue_ids_after_copy("runs"); }

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

QueryResult query_database(const std::string& target, const std::string& sql, bool write) {
  Store store(target, write ? Store::Access::ReadWrite : Store::Access::ReadOnly);
  try {
    return store.query(sql);
  } catch (const DatabaseError& e) {
    const bool read_only = e.kind() == DatabaseError::Kind::ReadOnly;
    throw ConfigError(fmt::format("query failed: {}{}", e.what(),
                                  read_only ? " (the database is opened read-only: pass --write "
                                              "to change it)"
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
