// Reading a user-named text file whole.
#include "harness/core/text_file.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/core/error.h"

namespace moelab {

std::string read_text_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(fmt::format("'{}' is not a file", path));
  }
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot open '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace moelab
