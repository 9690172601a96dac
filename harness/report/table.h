// Rendering of query results: aligned text, CSV (RFC 4180 quoting) and JSON.
#pragma once

#include <string>

#include "harness/store/store.h"

namespace moelab {

std::string format_aligned(const QueryResult& result);
std::string format_csv(const QueryResult& result);
std::string format_json(const QueryResult& result);  // array of objects, typed values

}  // namespace moelab
