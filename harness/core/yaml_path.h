// The node at a dotted path ("router.name") of a YAML tree, read without inserting anything.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace moelab {

// An undefined node when a part of the path is missing or its parent is not a mapping.
YAML::Node yaml_at_path(const YAML::Node& root, const std::string& path);

}  // namespace moelab
