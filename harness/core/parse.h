// The one integer parser of the project: the whole text as a base-10 int64 (optional '-'),
// nothing before or after it. Config values, overrides, seeds, run ids, file headers and
// metric names all go through it; callers add what the text was in their error.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "harness/core/error.h"

namespace moelab {

inline std::optional<int64_t> parse_int64(std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// parse_int64 or Error "`what`: 'text' is not an integer".
inline int64_t to_int64(std::string_view text, std::string_view what) {
  if (auto value = parse_int64(text)) return *value;
  throw Error(fmt::format("{}: '{}' is not an integer", what, text));
}

}  // namespace moelab
