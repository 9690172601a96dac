// The results database, on SQLite (a file, the default) or PostgreSQL (a URI): versioned
// schema with migrations, run records with provenance, flattened params, batched metric
// history, final summaries, the sweep queue, and ad-hoc queries. Schema: docs/schema.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness/store/sql_connection.h"

namespace moelab {

// Where and with what a run was produced.
struct Provenance {
  std::string git_commit;
  bool git_dirty = false;
  std::string moelab_version;
  std::string torch_version;
  std::string compiler;
  std::string host;
  std::string cpu_model;
  std::string gpu_model;
  int64_t threads = 0;
  int64_t blas_threads = 0;
  std::string blas;  // the BLAS library and its running core (harness/core/blas.h)
};

struct RunRecord {
  std::string config_hash;
  std::string sweep;  // "" for a single `moelab run`
  std::string name;
  std::string task;
  std::string router;
  int64_t seed = 0;
  std::string config_yaml;
  std::vector<std::pair<std::string, std::string>> params;  // flattened dotted keys
  Provenance provenance;
  std::string axes;  // a sweep run's axis values, "router=topk seed=1"
};

// A run's state: `runs.status`, stored as the text run_status_text gives (the CHECK list of
// the schema), converted only where the store binds or reads it.
enum class RunStatus { Pending, Running, Done, Failed, Diverged, Interrupted };

// "pending", "running", "done", "failed", "diverged", "interrupted", and back (an Error
// naming the text and the known ones for any other).
std::string_view run_status_text(RunStatus status);
RunStatus parse_run_status(std::string_view text);

// A running run's progress: steps done (at its last logging step) of its total, in `seconds`
// since it started.
struct RunProgress {
  double steps_done = 0, steps_total = 0, seconds = 0;
};

struct ClaimedRun {
  int64_t run_id = 0;
  std::string config_yaml, config_hash;
};

// The run that stands for a config hash: its done run if any, else its newest.
struct RunState {
  int64_t run_id = 0;
  RunStatus status = RunStatus::Pending;
  std::string sweep;
  std::string error;
};

// What acquire_run found: the run and its status; `claimed` when it is now running for the
// caller (`created`: in a new row), else it is done, running for someone else, or failed or
// diverged and not retried (with its error).
struct AcquiredRun {
  int64_t run_id = 0;
  RunStatus status = RunStatus::Pending;
  std::string error;
  bool claimed = false;
  bool created = false;
};

struct MetricRow {
  int64_t step = 0;
  std::string split;  // train | val | test | ...
  std::string name;
  double value = 0.0;
};

// A sweep submitted to a batch scheduler: one Slurm job array, say.
struct Launch {
  std::string launcher;  // slurm
  std::string job_id;
  std::string script;    // the batch script, kept for inspection
  std::string submitted_at;
};

// Seconds without a heartbeat after which a running run counts as abandoned and is requeued
// (sweep --stale-after; also how long a run waits on another process's dense parent).
inline constexpr double kDefaultStaleSeconds = 120;

// `moelab query`: the existing database at `target` (a file or a PostgreSQL URI), read-only
// unless `write` (no migration, no write can happen; a file on a read-only mount is read as
// immutable). ConfigError naming the database when it is missing, not a database, or the
// SQL fails.
QueryResult query_database(const std::string& target, const std::string& sql, bool write);

// SQL condition on `runs r`: the run belongs to sweep ?1 (its own, or a member such as a shared
// dense parent), or ?1 is '' (every run).
#define MOELAB_RUN_IN_SWEEP_SQL \
  "(?1 = '' OR r.sweep = ?1 OR r.id IN (SELECT run_id FROM sweep_members WHERE sweep = ?1))"

// A metric or summary that measures time (…seconds, steps_per_second, route_ms), not what was
// computed: it differs between runs of the same config on the same machine.
bool is_timing_metric(const std::string& name);

// This machine's host name ("unknown" if it has none).
std::string host_name();
// Who holds a claimed run: "host:pid" of this process.
std::string worker_id();

class Store {
 public:
  static constexpr int kSchemaVersion = 7;

  enum class Access { ReadWrite, ReadOnly };
  // `target`: a file path (SQLite) or a PostgreSQL URI. ReadWrite opens (creating a file if
  // needed) and migrates the database before returning. ReadOnly (reports, queries, plots)
  // needs an existing database of the current schema and works on a read-only mount; writing
  // through it fails. A database that another process is creating (no schema yet) is waited
  // for, up to kBusyTimeout, until that process has committed its first migration.
  explicit Store(const std::string& target, Access access = Access::ReadWrite);

  int64_t create_run(const RunRecord& record);  // status 'running'
  int64_t enqueue_run(const RunRecord& record);  // status 'pending', provenance at claim time
  // Runs `writes` (calls of this store's methods) in one transaction: all or nothing.
  void batch(const std::function<void()>& writes);
  void log_metrics(int64_t run_id, const std::vector<MetricRow>& rows);
  // Writes the summaries and the final status in one transaction.
  void finish_run(int64_t run_id, RunStatus status,
                  const std::vector<std::pair<std::string, double>>& summaries,
                  const std::string& error = "", double wall_seconds = 0.0);

  // The newest run with this config hash that did not end well (running, interrupted,
  // failed, diverged), if any: what `--resume` continues.
  std::optional<int64_t> latest_unfinished_run(const std::string& config_hash);
  // Marks the run 'running' again and deletes its metric rows after `step`, which the
  // resumed run logs anew; earlier summaries are dropped (the resumed run writes them).
  void reopen_run(int64_t run_id, int64_t step, const Provenance& provenance);

  // The sweep queue. claim_run moves the oldest pending run of the sweep to 'running' in one
  // transaction that no other claim can share (SQLite's write lock; a row lock skipped by the
  // other workers on PostgreSQL), so no two workers ever get the same run.
  std::optional<ClaimedRun> claim_run(const std::string& sweep, const std::string& worker);
  void heartbeat(int64_t run_id);
  std::optional<RunState> run_for_hash(const std::string& config_hash);
  // A dependency run (a converted run's dense parent), in one serialized transaction: the
  // config's done run, or its running one, or its pending/interrupted one claimed for
  // `worker`, or a new running row when there is none (or, with retry_failed, when the
  // newest failed or diverged).
  AcquiredRun acquire_run(const RunRecord& record, const std::string& worker,
                          bool retry_failed);
  void set_parent(int64_t run_id, int64_t parent_run_id);
  // Counts a done run of another sweep (or a single run) as one of `sweep`'s, for reports.
  void add_to_sweep(const std::string& sweep, int64_t run_id);
  // Done runs by id ("42") or config-hash prefix ("3fa9c2d1..."): (id, canonical config).
  std::vector<ClaimedRun> done_runs_matching(const std::string& reference);
  std::vector<std::pair<std::string, double>> summaries(int64_t run_id);
  // Metric values of one (split, step) of a run, by name.
  std::vector<std::pair<std::string, double>> metrics_at(int64_t run_id, const std::string& split,
                                                         int64_t step);
  // Deletes a run's rows at `step` other than its training rows: what an interrupted final
  // evaluation wrote before the run was resumed from its final checkpoint.
  void delete_evaluations(int64_t run_id, int64_t step);
  std::map<RunStatus, int64_t> status_counts(const std::string& sweep);  // status -> runs
  std::vector<std::string> running_workers(const std::string& sweep);   // distinct "host:pid"
  std::vector<RunProgress> running_progress(const std::string& sweep);    // its running runs
  double mean_done_seconds(const std::string& sweep);  // of its done runs' wall times; 0: none
  // Requeueing: back to 'pending' with no worker, for a worker to claim (its metrics are
  // cleared at claim time). This run, only while its status is `status`; whether it was.
  bool requeue_if(int64_t run_id, RunStatus status);
  // This run if it is running with a heartbeat older than stale_seconds; whether it was.
  bool requeue_if_stale(int64_t run_id, double stale_seconds);
  // The sweep's running runs whose heartbeat is older than stale_seconds. How many.
  int64_t requeue_stale(const std::string& sweep, double stale_seconds);
  // The running runs, in any sweep, of a worker ("host:pid") known to be dead. How many.
  int64_t requeue_worker(const std::string& worker);
  // The sweep's runs in `status` (running, interrupted). How many.
  int64_t requeue_sweep(const std::string& sweep, RunStatus status);
  void record_launch(const std::string& sweep, const Launch& launch);
  std::vector<Launch> launches(const std::string& sweep);  // oldest first
  // Peak resident memory of the process and the (path, sha256) of the data files read.
  void record_resources(int64_t run_id, double peak_rss_mb,
                        const std::vector<std::pair<std::string, std::string>>& files);

  QueryResult query(const std::string& sql, const std::vector<SqlParam>& params = {});
  int schema_version();
  // The file path or URI it was opened with.
  const std::string& path() const { return db_->name(); }
  // SQL: seconds from a timestamp column to now, by the database's clock.
  std::string seconds_since(const std::string& column) const { return db_->seconds_since_sql(column); }
  // After `db copy` inserted runs with their ids: new runs are numbered above them.
  void continue_run_ids();

 private:
  void migrate();
  void check_readable_schema();
  int readable_schema_version();
  [[noreturn]] void throw_newer_schema(int version);
  int64_t insert_run(const RunRecord& record, RunStatus status);
  int64_t insert_run_rows(const RunRecord& record, RunStatus status);  // no transaction
  int64_t requeue_where(const std::string& condition, std::vector<SqlParam> values);
  void write_provenance(int64_t run_id, const Provenance& provenance);
  std::unique_ptr<SqlConnection> db_;
};

}  // namespace moelab
