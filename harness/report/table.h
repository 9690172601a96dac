// Rendering of query results: aligned text, CSV (RFC 4180 quoting), JSON, Markdown and LaTeX.
#pragma once

#include <string>

#include "harness/store/store.h"

namespace moelab {

std::string format_aligned(const QueryResult& result);
std::string format_csv(const QueryResult& result);
std::string format_json(const QueryResult& result);  // array of objects, typed values
std::string format_markdown(const QueryResult& result);  // a pipe table, numbers right-aligned
// A tabular environment, `caption` as a comment under it; _ % & # $ escaped.
std::string format_latex(const QueryResult& result, const std::string& caption);
std::string escape_html(const std::string& text);  // < > & as entities

}  // namespace moelab
