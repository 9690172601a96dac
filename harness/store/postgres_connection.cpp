// The PostgreSQL engine through libpq: a URI ("postgresql://user@host:port/name",
// "postgresql:///name" over the local socket) with secrets from PGPASSWORD or ~/.pgpass only,
// placeholders rewritten to $N, values sent as text for the server to type, and the server's
// clock and advisory locks for what SQLite does with its file lock.
#include <fmt/format.h>
#include <libpq-fe.h>

#include <memory>

#include "harness/core/parse.h"
#include "harness/store/sql_connection.h"

namespace moelab {
namespace {

// The advisory lock that serialized write transactions take ("moelab" in ASCII).
constexpr int64_t kWriterLock = 0x6d6f656c6162;

// SQLSTATE of a write in a read-only transaction.
bool is_read_only_violation(const std::string& state) { return state == "25006"; }

// `?` and `?N` outside quotes and comments become `$k` and `$N`.
std::string numbered_placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int next = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    const auto copy_until = [&](const std::string& end) {
      const size_t stop = sql.find(end, i + 1);
      const size_t last = stop == std::string::npos ? sql.size() : stop + end.size();
      out.append(sql, i, last - i);
      i = last - 1;
    };
    if (c == '\'' || c == '"') {
      copy_until(std::string(1, c));  // '' inside a literal reads as two literals: same text
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      copy_until("\n");
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      copy_until("*/");
    } else if (c == '?') {
      size_t digits = i + 1;
      while (digits < sql.size() && std::isdigit(static_cast<unsigned char>(sql[digits]))) ++digits;
      out += '$';
      if (digits > i + 1) {  // ?N; a bare ? after it is N+1, as SQLite numbers them
        const std::string number = sql.substr(i + 1, digits - i - 1);
        next = std::max(next, std::stoi(number));
        out += number;
      } else {
        out += std::to_string(++next);
      }
      i = digits - 1;
    } else {
      out += c;
    }
  }
  return out;
}

std::string text_of(const SqlParam& param) {
  if (const auto* integer = std::get_if<int64_t>(&param)) return std::to_string(*integer);
  if (const auto* real = std::get_if<double>(&param)) return fmt::format("{:.17g}", *real);
  return std::get<std::string>(param);
}

// Type OIDs of pg_type: integers and booleans read as Integer, floating and numeric as Real.
Cell cell_of(const PGresult* result, int row, int column) {
  Cell cell;
  if (PQgetisnull(result, row, column)) return cell;
  const char* value = PQgetvalue(result, row, column);
  switch (PQftype(result, column)) {
    case 16:  // bool
      cell.type = Cell::Type::Integer;
      cell.integer = value[0] == 't' ? 1 : 0;
      break;
    case 20: case 21: case 23:  // int8, int2, int4
      cell.type = Cell::Type::Integer;
      cell.integer = std::stoll(value);
      break;
    case 700: case 701: case 1700:  // float4, float8, numeric
      cell.type = Cell::Type::Real;
      cell.real = std::stod(value);
      break;
    default:
      cell.type = Cell::Type::Text;
      cell.text = value;
  }
  return cell;
}

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

void ignore_notice(void*, const char*) {}  // "relation ... already exists, skipping" and the like

class PostgresConnection final : public SqlConnection {
 public:
  PostgresConnection(const std::string& uri, bool read_only) : uri_(uri) {
    refuse_uri_password(uri);
    // A server that drops packets is given up after 10 s (libpq waits for the system's TCP
    // timeout otherwise); the URI's own connect_timeout, coming after, wins.
    const char* keywords[] = {"connect_timeout", "dbname", nullptr};
    const char* values[] = {"10", uri.c_str(), nullptr};
    connection_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (connection_ == nullptr || PQstatus(connection_) != CONNECTION_OK) {
      const std::string host = connection_ != nullptr && PQhost(connection_) ? PQhost(connection_) : "?";
      const std::string port = connection_ != nullptr && PQport(connection_) ? PQport(connection_) : "?";
      const std::string message = connection_ != nullptr ? PQerrorMessage(connection_) : "out of memory";
      PQfinish(connection_);
      throw ConfigError(fmt::format("results database '{}': cannot connect to PostgreSQL at host "
                                    "'{}' port {}: {}",
                                    uri, host, port, trim_end(message)));
    }
    PQsetNoticeProcessor(connection_, ignore_notice, nullptr);
    try {
      execute_script("SET client_min_messages = warning");
      if (read_only) execute_script("SET default_transaction_read_only = on");
    } catch (...) {
      PQfinish(connection_);
      throw;
    }
  }
  ~PostgresConnection() override { PQfinish(connection_); }
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  Dialect dialect() const override { return Dialect::PostgreSQL; }
  const std::string& name() const override { return uri_; }

  QueryResult query(const std::string& sql, const std::vector<SqlParam>& params) override {
    const Result result = run(sql, params);
    QueryResult out;
    const int columns = PQnfields(result.get());
    for (int i = 0; i < columns; ++i) out.columns.emplace_back(PQfname(result.get(), i));
    for (int row = 0; row < PQntuples(result.get()); ++row) {
      std::vector<Cell> cells;
      for (int i = 0; i < columns; ++i) cells.push_back(cell_of(result.get(), row, i));
      out.rows.push_back(std::move(cells));
    }
    return out;
  }

  int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) override {
    const Result result = run(sql, params);
    const std::string changed = PQcmdTuples(result.get());
    return changed.empty() ? 0 : std::stoll(changed);
  }

  void execute_script(const std::string& sql) override { run(sql, {}, /*several=*/true); }

  bool in_transaction() override { return PQtransactionStatus(connection_) != PQTRANS_IDLE; }
  void begin(bool serialized) override {
    execute_script("BEGIN");
    if (serialized) execute_script(fmt::format("SELECT pg_advisory_xact_lock({})", kWriterLock));
  }
  void commit() override { execute_script("COMMIT"); }
  void rollback() override { execute_script("ROLLBACK"); }

  int schema_version() override {
    // pg_tables through a fresh snapshot, not to_regclass: that consults the session's catalog
    // cache, which can still hold "no such table" from before another process's migration
    // committed (seen as "relation runs already exists" when workers start on a new database).
    const auto exists = query("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = "
                              "current_schema() AND tablename = 'moelab_schema'",
                              {});
    if (exists.rows.at(0).at(0).integer == 0) return 0;
    const auto version = query("SELECT MAX(version) FROM moelab_schema", {});
    return static_cast<int>(version.rows.at(0).at(0).integer);
  }
  bool empty() override {
    return query("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()", {})
               .rows.at(0)
               .at(0)
               .integer == 0;
  }
  // The database exists before moelab does (a server's are created by its administrator), so
  // a writer creating moelab's tables is one of its connected clients.
  bool creation_under_way() override {
    return query("SELECT COUNT(*) FROM pg_catalog.pg_stat_activity WHERE datname = "
                 "current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                 {})
               .rows.at(0)
               .at(0)
               .integer > 0;
  }
  void set_schema_version(int version) override {
    execute_script(fmt::format("CREATE TABLE IF NOT EXISTS moelab_schema (version INTEGER NOT NULL); "
                               "DELETE FROM moelab_schema; INSERT INTO moelab_schema VALUES ({});",
                               version));
  }

  std::string now_sql() const override {
    return "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
  }
  std::string seconds_since_sql(const std::string& column) const override {
    return fmt::format("CAST(EXTRACT(EPOCH FROM (clock_timestamp() - CAST({} AS TIMESTAMPTZ))) AS "
                       "DOUBLE PRECISION)",
                       column);
  }
  void continue_ids_after_copy(const std::string& table) override {
    execute_script(fmt::format("SELECT setval(pg_get_serial_sequence('{0}', 'id'), "
                               "COALESCE(MAX(id), 0) + 1, false) FROM {0}",
                               table));
  }

 private:
  // One statement (PQexecParams, as SQLite runs one), or with `several` a script of them.
  Result run(const std::string& sql, const std::vector<SqlParam>& params, bool several = false) {
    std::vector<std::string> texts;
    std::vector<const char*> values;
    texts.reserve(params.size());
    for (const auto& param : params) {
      const bool null = std::holds_alternative<std::monostate>(param);
      texts.push_back(null ? "" : text_of(param));
      values.push_back(null ? nullptr : texts.back().c_str());
    }
    Result result(several ? PQexec(connection_, sql.c_str())
                          : PQexecParams(connection_,
                                         params.empty() ? sql.c_str() : numbered_placeholders(sql).c_str(),
                                         static_cast<int>(params.size()), nullptr, values.data(),
                                         nullptr, nullptr, 0));
    const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
    throw_failure(result.get());
  }

  [[noreturn]] void throw_failure(const PGresult* result) {
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    const std::string sqlstate = state != nullptr ? state : "";
    const bool gone = PQstatus(connection_) == CONNECTION_BAD;
    const std::string message = fmt::format("results database '{}': {}{}", uri_,
                                            gone ? "the connection to the server was lost: " : "",
                                            trim_end(PQerrorMessage(connection_)));
    throw DatabaseError(message, is_read_only_violation(sqlstate) ? DatabaseError::Kind::ReadOnly
                                                                  : DatabaseError::Kind::Failed);
  }

  std::string uri_;
  PGconn* connection_ = nullptr;
};

}  // namespace

std::unique_ptr<SqlConnection> open_postgres(const std::string& uri, bool read_only) {
  return std::make_unique<PostgresConnection>(uri, read_only);
}

}  // namespace moelab
