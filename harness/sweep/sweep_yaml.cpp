// The sweep file's YAML helpers (see sweep_yaml.h).
#include "harness/sweep/sweep_yaml.h"

#include <fmt/format.h>

namespace moelab {

std::string where(const std::string& source, const YAML::Node& node) {
  const auto mark = node.Mark();
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

std::string flow(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

std::string display(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  if (node.IsMap() && node["name"] && node["name"].IsScalar()) {
    return node.size() == 1 ? node["name"].Scalar() : flow(node);
  }
  return flow(node);
}

}  // namespace moelab
