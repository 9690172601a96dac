// One connection to a results database engine: SQLite (a file, the embedded default) or
// PostgreSQL (a server, for clusters). The store writes its SQL once, with `?` / `?N`
// placeholders and the few dialect-specific expressions taken from here; each engine's
// errors arrive as DatabaseError (the machine or the server failed) or ConfigError (what the
// user named is wrong: not a database, an unreachable server, refused credentials).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {

// One value of a query result, keeping the engine's storage class for JSON output.
struct Cell {
  enum class Type { Null, Integer, Real, Text } type = Type::Null;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;
  std::string to_string() const;
  double number() const { return type == Type::Integer ? static_cast<double>(integer) : real; }
};

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
};

// A value bound to a query's placeholder (?, or ?N for the N-th value); monostate is NULL.
using SqlParam = std::variant<std::monostate, int64_t, double, std::string>;
SqlParam param_of(const Cell& cell);

// A statement failed on a working database: a full disk, an I/O error, a server that went
// away, a statement the engine rejects. The message names the database.
class DatabaseError : public Error {
 public:
  enum class Kind { Failed, ReadOnly };  // ReadOnly: a write on a read-only store
  DatabaseError(const std::string& message, Kind kind) : Error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

enum class Dialect { SQLite, PostgreSQL };

// How long a connection waits for another's lock (SQLite's busy handler), and how long a
// read-only store waits for a database being created to get its schema.
inline constexpr std::chrono::milliseconds kBusyTimeout{30000};

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual Dialect dialect() const = 0;
  // What the user named: the file's path, or the URI (which never holds a password).
  virtual const std::string& name() const = 0;

  // One statement with `params` bound in order; every row read. Placeholders: `?` (next
  // value) or `?N` (the N-th); a statement without params is passed to the engine as written.
  virtual QueryResult query(const std::string& sql, const std::vector<SqlParam>& params) = 0;
  // One statement; the number of rows it changed.
  virtual int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) = 0;
  // Several statements, no parameters (migrations).
  virtual void execute_script(const std::string& sql) = 0;

  // Write transactions. `serialized`: waits until no other serialized writer of the database
  // is inside one, in any process on any machine (SQLite's IMMEDIATE write lock; a
  // transaction-scoped advisory lock on PostgreSQL), for read-then-write decisions.
  virtual bool in_transaction() = 0;
  virtual void begin(bool serialized) = 0;
  virtual void commit() = 0;
  virtual void rollback() = 0;

  virtual int schema_version() = 0;
  virtual void set_schema_version(int version) = 0;  // inside the migration's transaction
  // Whether the database holds no table yet: new, or its first migration not committed.
  virtual bool empty() = 0;
  // For an empty database: whether a writer may be creating it now (SQLite: its file was
  // written within kBusyTimeout; PostgreSQL: another client is connected to it).
  virtual bool creation_under_way() = 0;

  // The current UTC time as ISO-8601 text ("2026-12-01T15:32:15.123Z"), and the seconds
  // from such a text column to now, as SQL expressions evaluated by the database's clock
  // (one clock for every machine of a cluster).
  virtual std::string now_sql() const = 0;
  virtual std::string seconds_since_sql(const std::string& column) const = 0;
  // After rows were inserted with explicit ids (db copy): new rows get ids above them.
  virtual void continue_ids_after_copy(const std::string& table) = 0;
};

// Opens `target`. read_only: an existing database, never created or written (reports,
// queries, plots); otherwise it is created if missing (a file; a PostgreSQL database must
// exist, its tables are created).
std::unique_ptr<SqlConnection> open_sqlite(const std::string& path, bool read_only);
std::unique_ptr<SqlConnection> open_postgres(const std::string& uri, bool read_only);
std::unique_ptr<SqlConnection> open_connection(const std::string& target, bool read_only);

}  // namespace moelab
