// A whole text file read at the edge where a user names it (configs, sweep files, claims
// files): ConfigError naming the path when it is not a readable file.
#pragma once

#include <string>

namespace moelab {

std::string read_text_file(const std::string& path);

}  // namespace moelab
