// The SQLite engine: a file opened in WAL mode with a short-sleeping busy handler, so that a
// sweep's worker processes share it; read-only opening that never creates, migrates or
// switches a file (and reads a database on a read-only mount as immutable).
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "harness/store/sql_connection.h"

namespace moelab {
namespace {

// Busy handler: SQLite's own sleeps 1, 2, 5, 10, ... ms between retries, so a lock held for a
// fraction of a millisecond (another process's claim or connection start-up) cost up to 18 ms.
// This one sleeps 50 us, doubling up to 3.2 ms, then 5 ms per retry, for kBusyTimeout in all.
int retry_when_busy(void*, int attempt) {
  constexpr int64_t kFirstUs = 50, kDoublings = 7, kLongestUs = 5000;
  const int64_t n = attempt;
  const int64_t slept_us = n <= kDoublings  // sum of the delays of the earlier attempts
                               ? kFirstUs * ((int64_t{1} << n) - 1)
                               : kFirstUs * ((int64_t{1} << kDoublings) - 1) +
                                     (n - kDoublings) * kLongestUs;
  if (slept_us >= std::chrono::microseconds(kBusyTimeout).count()) return 0;  // BUSY to the caller
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

// The file opened with `flags`, its busy handler set before anything reads it: a reader's
// first read can meet the lock of a writer creating the file.
SQLite::Database open_with_busy_handler(const std::string& path, int flags) {
  SQLite::Database db(path, flags);
  sqlite3_busy_handler(db.getHandle(), retry_when_busy, nullptr);
  return db;
}

// Read-only: the file must exist, and is never created, migrated or switched to WAL. A WAL
// database on a read-only mount cannot get its shared-memory file; it is then read as the
// file stands (nothing can be writing to a read-only mount).
SQLite::Database open_read_only(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", path));
  }
  try {
    SQLite::Database db = open_with_busy_handler(path, SQLite::OPEN_READONLY);
    db.execAndGet("PRAGMA user_version");  // opening is lazy: this reads the file
    return db;
  } catch (const SQLite::Exception& e) {
    const std::filesystem::path folder = std::filesystem::absolute(path).parent_path();
    const bool cannot_write = (e.getErrorCode() & 0xff) == SQLITE_CANTOPEN ||
                              (e.getErrorCode() & 0xff) == SQLITE_READONLY;
    if (!cannot_write || access(folder.c_str(), W_OK) == 0) throw;
    return open_with_busy_handler("file:" + path + "?immutable=1",
                                  SQLite::OPEN_READONLY | SQLite::OPEN_URI);
  }
}

SQLite::Database open_read_write(const std::string& path) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  return open_with_busy_handler(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
}

// SQLite's exception as moelab's: ConfigError when the file is not a database or cannot be
// opened where it is (what the user named is wrong), DatabaseError otherwise.
[[noreturn]] void rethrow(const std::string& path, const SQLite::Exception& e) {
  const std::string message = fmt::format("results database '{}': {}", path, e.what());
  const int code = e.getErrorCode() & 0xff;
  if (code == SQLITE_NOTADB || code == SQLITE_CANTOPEN) throw ConfigError(message);
  throw DatabaseError(message, code == SQLITE_READONLY ? DatabaseError::Kind::ReadOnly
                                                      : DatabaseError::Kind::Failed);
}

void bind_all(SQLite::Statement& statement, const std::vector<SqlParam>& params) {
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
}

Cell cell_of(const SQLite::Column& column) {
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
  return cell;
}

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(const std::string& path, bool read_only) try
      : path_(path), db_(read_only ? open_read_only(path) : open_read_write(path)) {
    if (read_only) return;
    enable_wal(db_);
    db_.exec("PRAGMA synchronous=NORMAL");
    db_.exec("PRAGMA foreign_keys=ON");
  } catch (const SQLite::Exception& e) {
    rethrow(path, e);
  } catch (const std::filesystem::filesystem_error& e) {
    throw ConfigError(fmt::format("results database '{}': {}", path, e.code().message()));
  }

  Dialect dialect() const override { return Dialect::SQLite; }
  const std::string& name() const override { return path_; }

  QueryResult query(const std::string& sql, const std::vector<SqlParam>& params) override {
    try {
      SQLite::Statement statement(db_, sql);
      bind_all(statement, params);
      QueryResult result;
      const int columns = statement.getColumnCount();
      for (int i = 0; i < columns; ++i) result.columns.emplace_back(statement.getColumnName(i));
      while (statement.executeStep()) {
        std::vector<Cell> row;
        for (int i = 0; i < columns; ++i) row.push_back(cell_of(statement.getColumn(i)));
        result.rows.push_back(std::move(row));
      }
      return result;
    } catch (const SQLite::Exception& e) {
      rethrow(path_, e);
    }
  }

  int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) override {
    try {
      SQLite::Statement statement(db_, sql);
      bind_all(statement, params);
      return statement.exec();
    } catch (const SQLite::Exception& e) {
      rethrow(path_, e);
    }
  }

  void execute_script(const std::string& sql) override { run(sql); }

  bool in_transaction() override { return sqlite3_get_autocommit(db_.getHandle()) == 0; }
  // IMMEDIATE: the write lock up front, so no two writers deadlock on an upgrade.
  void begin(bool) override { run("BEGIN IMMEDIATE"); }
  void commit() override { run("COMMIT"); }
  void rollback() override { run("ROLLBACK"); }

  int schema_version() override {
    try {
      return db_.execAndGet("PRAGMA user_version").getInt();
    } catch (const SQLite::Exception& e) {
      rethrow(path_, e);
    }
  }
  void set_schema_version(int version) override {
    run(fmt::format("PRAGMA user_version = {}", version));
  }
  bool empty() override {
    return query("SELECT COUNT(*) FROM sqlite_master", {}).rows.at(0).at(0).integer == 0;
  }
  // A writer creates the file, switches it to WAL and migrates it at once, each step within
  // the busy timeout; the file is not written again before its first checkpoint.
  bool creation_under_way() override {
    std::error_code error;
    const auto written = std::filesystem::last_write_time(path_, error);
    return !error && std::filesystem::file_time_type::clock::now() - written < kBusyTimeout;
  }

  std::string now_sql() const override { return "strftime('%Y-%m-%dT%H:%M:%fZ','now')"; }
  std::string seconds_since_sql(const std::string& column) const override {
    return fmt::format("((julianday('now') - julianday({})) * 86400.0)", column);
  }
  void continue_ids_after_copy(const std::string&) override {}  // rowids continue by themselves

 private:
  void run(const std::string& sql) {
    try {
      db_.exec(sql);
    } catch (const SQLite::Exception& e) {
      rethrow(path_, e);
    }
  }

  std::string path_;
  SQLite::Database db_;
};

}  // namespace

std::unique_ptr<SqlConnection> open_sqlite(const std::string& path, bool read_only) {
  return std::make_unique<SqliteConnection>(path, read_only);
}

std::unique_ptr<SqlConnection> open_connection(const std::string& target, bool read_only) {
  return is_postgres_uri(target) ? open_postgres(target, read_only) : open_sqlite(target, read_only);
}

}  // namespace moelab
