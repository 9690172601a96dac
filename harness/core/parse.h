// The project's parsers of numbers in text: the whole text as a base-10 int64 (optional '-')
// or as a double, nothing before or after it. Config values, overrides, seeds, run ids, file
// headers, metric names and sweep values all go through them; callers add what the text was
// in their error.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "harness/core/error.h"

namespace moelab {

inline std::optional<int64_t> parse_int64(std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// The whole text as a number (strtod's syntax: decimals, exponents, inf, nan), nothing before
// or after it; callers that need a finite value check it.
inline std::optional<double> parse_double(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return value;
}

// parse_int64 or Error "`what`: 'text' is not an integer".
inline int64_t to_int64(std::string_view text, std::string_view what) {
  if (auto value = parse_int64(text)) return *value;
  throw Error(fmt::format("{}: '{}' is not an integer", what, text));
}

// "a,b,,c" split on ',' -> {"a", "b", "", "c"} (a trailing separator adds nothing).
inline std::vector<std::string> split_text(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

// `text` without trailing blanks and line breaks (a command's or a library's message).
inline std::string trim_end(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

// Whether a results-database target is a PostgreSQL URI ("postgresql://...", "postgres://...")
// rather than an SQLite file path.
inline bool is_postgres_uri(const std::string& target) {
  return target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0;
}

// Refuses a PostgreSQL URI that carries a password ("user:secret@host", "?password=..."):
// it would be written to configs, logs and the runs table. Checked by the config and by the
// store (commands that take a URI directly), before anything prints or writes it.
inline void refuse_uri_password(const std::string& target) {
  if (!is_postgres_uri(target)) return;
  const std::string authority = target.substr(target.find("://") + 3);
  const size_t at = authority.find('@');
  const bool in_user_info = at != std::string::npos && at < authority.find('/') &&
                            authority.substr(0, at).find(':') != std::string::npos;
  if (in_user_info || target.find("password=") != std::string::npos) {
    throw ConfigError("results database URI holds a password: leave it out of the URI (it would be "
                      "written to configs, logs and the database) and give it in ~/.pgpass or "
                      "PGPASSWORD");
  }
}

}  // namespace moelab
