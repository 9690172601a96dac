// The launcher section: the file's mapping, the command line's settings over it.
#include "harness/sweep/launcher.h"

#include <fmt/format.h>

namespace moelab {

LauncherOptions read_launcher(YAML::Node section, const std::string& source,
                              const std::vector<std::string>& settings) {
  if (section && !section.IsNull() && !section.IsMap()) {
    throw ConfigError(fmt::format("{}:{}:{}: launcher must be a mapping (name: slurm, partition: ...)",
                                  source, section.Mark().line + 1, section.Mark().column + 1));
  }
  // The file's own nodes keep their marks (line and column) for the errors.
  YAML::Node node = section && section.IsMap() ? section : YAML::Node(YAML::NodeType::Map);
  YamlSource where{source, {}};
  for (const std::string& setting : settings) {
    const auto equals = setting.find('=');
    if (equals == std::string::npos) {
      throw ConfigError(fmt::format("launcher setting '{}' is not key=value", setting));
    }
    const std::string key = setting.substr(0, equals);
    node[key] = setting.substr(equals + 1);
    where.overrides["launcher." + key] = fmt::format("option --{}", key == "name" ? "launcher" : key);
  }
  LauncherOptions options;
  YamlReader::read_struct(node, where, "launcher.", options);
  return options;
}

}  // namespace moelab
