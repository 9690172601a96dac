// Lookup shared by the explicit plugin lists (routers/registry.cpp, tasks/registry.cpp).
#pragma once

#include <fmt/format.h>

#include <string>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/fields.h"

namespace moelab {

// Entry must have a `const char* name`. Unknown names are a ConfigError listing the known ones.
template <class Entry>
const Entry& find_entry(const std::vector<Entry>& entries, const std::string& name,
                        const char* kind) {
  std::vector<std::string> names;
  for (const auto& entry : entries) {
    if (name == entry.name) return entry;
    names.emplace_back(entry.name);
  }
  std::string hint = nearest_name(name, names);
  throw ConfigError(fmt::format("unknown {} '{}'{}; known {}s: {}", kind, name,
                                hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                                kind, fmt::join(names, ", ")));
}

}  // namespace moelab
