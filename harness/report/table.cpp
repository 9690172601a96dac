// Query result rendering: aligned text, CSV, JSON, Markdown and LaTeX.
#include "harness/report/table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace moelab {
namespace {

std::string cell_text(const Cell& cell) { return cell.type == Cell::Type::Null ? "" : cell.to_string(); }

std::string escape_latex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '%' || c == '&' || c == '#' || c == '$') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace


std::string format_aligned(const QueryResult& result) {
  const size_t columns = result.columns.size();
  std::vector<size_t> width(columns);
  std::vector<bool> numeric(columns, true);
  for (size_t c = 0; c < columns; ++c) width[c] = result.columns[c].size();
  for (const auto& row : result.rows) {
    for (size_t c = 0; c < columns; ++c) {
      width[c] = std::max(width[c], row[c].to_string().size());
      if (row[c].type == Cell::Type::Text) numeric[c] = false;
    }
  }
  std::string out;
  auto append_row = [&](auto cell_text, bool header) {
    for (size_t c = 0; c < columns; ++c) {
      const std::string text = cell_text(c);
      const bool right = numeric[c] && !header;
      out += right ? fmt::format("{:>{}}", text, width[c]) : fmt::format("{:<{}}", text, width[c]);
      out += c + 1 < columns ? "  " : "";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out += "\n";
  };
  append_row([&](size_t c) { return result.columns[c]; }, true);
  for (size_t c = 0; c < columns; ++c) {
    out += std::string(width[c], '-') + (c + 1 < columns ? "  " : "");
  }
  out += "\n";
  for (const auto& row : result.rows) append_row([&](size_t c) { return row[c].to_string(); }, false);
  out += fmt::format("({} row{})\n", result.rows.size(), result.rows.size() == 1 ? "" : "s");
  return out;
}

std::string format_csv(const QueryResult& result) {
  auto quote = [](const std::string& text) {
    if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char ch : text) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return quoted + "\"";
  };
  std::string out;
  for (size_t c = 0; c < result.columns.size(); ++c) {
    out += (c ? "," : "") + quote(result.columns[c]);
  }
  out += "\n";
  for (const auto& row : result.rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string text = row[c].type == Cell::Type::Null ? ""
                               : row[c].type == Cell::Type::Real
                                   ? fmt::format("{}", row[c].real)
                                   : row[c].to_string();
      out += (c ? "," : "") + quote(text);
    }
    out += "\n";
  }
  return out;
}

std::string format_json(const QueryResult& result) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : result.rows) {
    nlohmann::json object = nlohmann::json::object();
    for (size_t c = 0; c < row.size(); ++c) {
      const Cell& cell = row[c];
      switch (cell.type) {
        case Cell::Type::Null: object[result.columns[c]] = nullptr; break;
        case Cell::Type::Integer: object[result.columns[c]] = cell.integer; break;
        case Cell::Type::Real: object[result.columns[c]] = cell.real; break;
        case Cell::Type::Text: object[result.columns[c]] = cell.text; break;
      }
    }
    rows.push_back(std::move(object));
  }
  return rows.dump(2) + "\n";
}

std::string format_markdown(const QueryResult& table) {
  std::string out = "| " + fmt::format("{}", fmt::join(table.columns, " | ")) + " |\n|";
  for (size_t i = 0; i < table.columns.size(); ++i) out += i == 0 ? "---|" : "---:|";
  out += "\n";
  for (const auto& row : table.rows) {
    out += "|";
    for (const auto& cell : row) out += " " + cell_text(cell) + " |";
    out += "\n";
  }
  return out;
}

std::string format_latex(const QueryResult& table, const std::string& caption) {
  std::string out = "\\begin{tabular}{l" + std::string(table.columns.size() - 1, 'r') + "}\n\\hline\n";
  std::vector<std::string> header;
  for (const auto& column : table.columns) header.push_back(escape_latex(column));
  out += fmt::format("{} \\\\\n\\hline\n", fmt::join(header, " & "));
  for (const auto& row : table.rows) {
    std::vector<std::string> cells;
    for (const auto& cell : row) cells.push_back(escape_latex(cell_text(cell)));
    out += fmt::format("{} \\\\\n", fmt::join(cells, " & "));
  }
  return out + "\\hline\n\\end{tabular}\n% " + escape_latex(caption) + "\n";
}

std::string escape_html(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace moelab
