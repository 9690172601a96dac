// db copy and db merge: run rows and everything that hangs off them, table by table.
#include "harness/store/transfer.h"

#include <fmt/format.h>

#include <map>
#include <optional>

#include "harness/core/error.h"

namespace moelab {
namespace {

// The tables keyed by run_id that a run's rows live in, copied with the run.
const char* const kRunTables[] = {"params",    "metrics",       "summaries",
                                  "run_files", "sweep_members", "identity_changes"};

// INSERT of one row of `columns` into `table`, with `run_id` (and, for runs, `id` and
// `parent_run_id`) replaced by `replacements`; returns the new row's result (its id for runs).
QueryResult insert_row(Store& output, const std::string& table, const std::vector<std::string>& columns,
                const std::vector<Cell>& row, const std::map<std::string, SqlParam>& replacements) {
  std::vector<std::string> names;
  std::vector<SqlParam> values;
  for (size_t i = 0; i < columns.size(); ++i) {
    const auto replaced = replacements.find(columns[i]);
    if (replaced != replacements.end() && std::holds_alternative<std::monostate>(replaced->second) &&
        columns[i] == "id") {
      continue;  // let the database number it
    }
    names.push_back(columns[i]);
    values.push_back(replaced != replacements.end() ? replaced->second : param_of(row[i]));
  }
  std::string placeholders;
  for (size_t i = 0; i < names.size(); ++i) placeholders += i == 0 ? "?" : ", ?";
  return output.query(fmt::format("INSERT INTO {} ({}) VALUES ({}){}", table, fmt::join(names, ", "),
                                  placeholders, table == "runs" ? " RETURNING id" : ""),
                      values);
}

int64_t column_index(const QueryResult& result, const std::string& name) {
  for (size_t i = 0; i < result.columns.size(); ++i) {
    if (result.columns[i] == name) return static_cast<int64_t>(i);
  }
  throw Error(fmt::format("the runs table has no column '{}'", name));
}

// What makes a run row the same attempt in two databases (a failed or interrupted run merged
// twice): its config, where and when it was created.
std::string run_identity(const QueryResult& runs, const std::vector<Cell>& row) {
  return fmt::format("{}|{}|{}", row[column_index(runs, "config_hash")].text,
                     row[column_index(runs, "created_at")].to_string(),
                     row[column_index(runs, "host")].to_string());
}

std::map<std::string, double> summaries_of(Store& store, int64_t run_id) {
  std::map<std::string, double> values;
  for (const auto& row : store.query("SELECT name, value FROM summaries WHERE run_id = ? AND "
                                     "value IS NOT NULL",
                                     {run_id})
                             .rows) {
    values[row[0].text] = row[1].number();
  }
  return values;
}

// Copies run `old_id` of `input` (its row in `runs`, given) and its rows in the run tables.
// new_id: the id to give it (copy), or nullopt for the next free one (merge).
int64_t copy_run(Store& input, Store& output, const QueryResult& runs, size_t row_index,
                 std::optional<int64_t> new_id, const std::map<int64_t, int64_t>& id_map) {
  const auto& row = runs.rows[row_index];
  const int64_t old_id = row[column_index(runs, "id")].integer;
  std::map<std::string, SqlParam> replace;
  replace["id"] = new_id ? SqlParam(*new_id) : SqlParam(std::monostate{});
  const Cell& parent = row[column_index(runs, "parent_run_id")];
  if (parent.type == Cell::Type::Integer) {
    const auto mapped = id_map.find(parent.integer);
    replace["parent_run_id"] = mapped != id_map.end() ? SqlParam(mapped->second) : SqlParam(std::monostate{});
  }
  const int64_t id = insert_row(output, "runs", runs.columns, row, replace).rows.at(0).at(0).integer;
  for (const char* table : kRunTables) {
    const auto rows = input.query(fmt::format("SELECT * FROM {} WHERE run_id = ?", table), {old_id});
    for (const auto& table_row : rows.rows) {
      insert_row(output, table, rows.columns, table_row, {{"run_id", id}});
    }
  }
  return id;
}

}  // namespace

std::string MergeReport::text() const {
  std::string out = fmt::format("merged: {} run(s) copied, {} duplicate(s) kept once, {} unfinished "
                                "run(s) not copied, {} conflict(s)\n",
                                copied, duplicates, unfinished, conflicts.size());
  for (const auto& conflict : conflicts) out += "  conflict: " + conflict + "\n";
  return out;
}

MergeReport merge_databases(const std::vector<std::string>& inputs, const std::string& output_path) {
  std::vector<std::unique_ptr<Store>> sources;
  for (const auto& path : inputs) {  // every input readable and current before anything is written
    if (path == output_path) {
      throw ConfigError(fmt::format("db merge: '{}' is both an input and the output", path));
    }
    sources.push_back(std::make_unique<Store>(path, Store::Access::ReadOnly));
  }
  Store output(output_path);
  MergeReport report;
  std::map<std::string, int64_t> done;  // config hash -> the kept done run in the output
  for (const auto& row : output.query("SELECT config_hash, MIN(id) FROM runs WHERE status = 'done' "
                                      "GROUP BY config_hash")
                             .rows) {
    done[row[0].text] = row[1].integer;
  }
  std::map<std::string, int64_t> seen;  // run_identity -> the output's run
  const QueryResult existing = output.query("SELECT * FROM runs");
  for (const auto& row : existing.rows) seen[run_identity(existing, row)] = row[column_index(existing, "id")].integer;
  for (size_t s = 0; s < sources.size(); ++s) {
    Store& input = *sources[s];
    const QueryResult runs = input.query("SELECT * FROM runs ORDER BY id");
    const int64_t id_column = column_index(runs, "id"), hash_column = column_index(runs, "config_hash");
    const int64_t status_column = column_index(runs, "status");
    std::map<int64_t, int64_t> id_map;  // this input's run id -> the output's
    output.batch([&] {
      for (size_t r = 0; r < runs.rows.size(); ++r) {
        const auto& row = runs.rows[r];
        const int64_t old_id = row[id_column].integer;
        const RunStatus status = parse_run_status(row[status_column].text);
        const std::string& hash = row[hash_column].text;
        if (status == RunStatus::Pending || status == RunStatus::Running) {
          ++report.unfinished;
          continue;
        }
        const std::string identity = run_identity(runs, row);
        if (const auto same = seen.find(identity); status != RunStatus::Done && same != seen.end()) {
          ++report.duplicates;  // the same unfinished attempt, met again
          id_map[old_id] = same->second;
          continue;
        }
        const auto kept = status == RunStatus::Done ? done.find(hash) : done.end();
        if (kept != done.end()) {
          ++report.duplicates;
          id_map[old_id] = kept->second;
          const auto ours = summaries_of(input, old_id), theirs = summaries_of(output, kept->second);
          for (const auto& [name, value] : ours) {
            if (is_timing_metric(name)) continue;
            const auto other = theirs.find(name);
            if (other == theirs.end() || other->second != value) {
              report.conflicts.push_back(fmt::format(
                  "{} run {} ({}): {} {} vs {} in run {}", inputs[s], old_id, hash.substr(0, 12), name,
                  value, other == theirs.end() ? std::string("absent") : fmt::format("{}", other->second),
                  kept->second));
            }
          }
          continue;
        }
        const int64_t id = copy_run(input, output, runs, r, std::nullopt, id_map);
        id_map[old_id] = id;
        seen[identity] = id;
        if (status == RunStatus::Done) done[hash] = id;
        ++report.copied;
      }
    });
  }
  return report;
}

int64_t copy_database(const std::string& source_path, const std::string& destination_path) {
  if (source_path == destination_path) {
    throw ConfigError(fmt::format("db copy: '{}' is both the source and the destination", source_path));
  }
  Store source(source_path, Store::Access::ReadOnly);
  Store destination(destination_path);
  if (destination.query("SELECT COUNT(*) FROM runs").rows[0][0].integer > 0) {
    throw ConfigError(fmt::format("db copy: '{}' already holds runs; copy into an empty database, "
                                  "or use db merge",
                                  destination_path));
  }
  const QueryResult runs = source.query("SELECT * FROM runs ORDER BY id");
  const int64_t id_column = column_index(runs, "id");
  std::map<int64_t, int64_t> same_ids;
  destination.batch([&] {
    for (size_t r = 0; r < runs.rows.size(); ++r) {
      const int64_t id = runs.rows[r][id_column].integer;
      same_ids[id] = id;
      copy_run(source, destination, runs, r, id, same_ids);
    }
    destination.continue_run_ids();
  });
  return static_cast<int64_t>(runs.rows.size());
}

}  // namespace moelab
