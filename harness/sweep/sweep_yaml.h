// The sweep file's YAML helpers, shared by its parts (sweep.cpp, search.cpp): where a node was
// written, a node as one line of flow YAML, and the short label of an axis value.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace moelab {

std::string where(const std::string& source, const YAML::Node& node);  // "file:line:column"
std::string flow(const YAML::Node& node);     // {name: topk, k: 2}
std::string display(const YAML::Node& node);  // a scalar as written, a section by its name

}  // namespace moelab
