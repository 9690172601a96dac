// The layer check: the source folders are layers, bottom to top, and a file includes headers
// of its own layer and the layers below it only. README's layer map lists the same order.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Bottom to top: a layer's folder and its name in README's layer map.
const std::vector<std::pair<std::string, std::string>> kLayers = {
    {"harness/core/", "core"},       {"harness/config/", "config"},
    {"harness/store/", "store"},     {"routers/", "routers"},
    {"harness/model/", "model"},     {"tasks/", "tasks"},
    {"harness/train/", "train"},     {"harness/convert/", "convert"},
    {"harness/run/", "run"},         {"harness/sweep/", "sweep"},
    {"harness/report/", "report"},   {"harness/cli/", "cli"},
};

int layer_of(const std::string& path) {
  for (size_t i = 0; i < kLayers.size(); ++i) {
    if (path.rfind(kLayers[i].first, 0) == 0) return static_cast<int>(i);
  }
  return -1;
}

using IncludeMap = std::map<std::string, std::vector<std::string>>;  // file -> its "..." includes

// Every rule broken, one line each: a file in no layer, or an include of a layer above.
std::vector<std::string> layer_violations(const IncludeMap& includes) {
  std::vector<std::string> found;
  for (const auto& [file, headers] : includes) {
    const int own = layer_of(file);
    if (own < 0) {
      found.push_back(file + ": in no layer (place it in one of the layer folders)");
      continue;
    }
    for (const auto& header : headers) {
      const int target = layer_of(header);
      if (target > own) {
        found.push_back(file + " (" + kLayers[own].second + ") includes " + header + " (" +
                        kLayers[target].second + ", a layer above)");
      }
    }
  }
  return found;
}

IncludeMap source_includes(const std::filesystem::path& root) {
  const std::regex include_line(R"re(^\s*#\s*include\s*"([^"]+)")re");
  IncludeMap includes;
  for (const char* top : {"harness", "routers", "tasks"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root / top)) {
      const auto extension = entry.path().extension();
      if (!entry.is_regular_file() || (extension != ".h" && extension != ".cpp")) continue;
      const std::string relative = std::filesystem::relative(entry.path(), root).string();
      auto& headers = includes[relative];
      std::ifstream in(entry.path());
      std::string line;
      std::smatch match;
      while (std::getline(in, line)) {
        if (std::regex_search(line, match, include_line)) headers.push_back(match[1]);
      }
    }
  }
  return includes;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

}  // namespace

TEST_CASE("every source file sits in a layer and includes only its layer and those below",
          "[layers]") {
  const IncludeMap includes = source_includes(MOELAB_SOURCE_DIR);
  REQUIRE(includes.size() > 50);  // the whole tree was read
  const auto violations = layer_violations(includes);
  INFO(joined(violations));
  CHECK(violations.empty());
}

TEST_CASE("the layer check finds an upward include and a file outside the layers", "[layers]") {
  const IncludeMap includes = {
      {"routers/topk.h", {"harness/core/error.h", "routers/router.h"}},           // fine
      {"harness/model/moe_layer.h", {"harness/convert/conversion.h"}},            // upward
      {"tasks/task.h", {"harness/model/transformer.h", "harness/config/config.h"}},  // fine
      {"harness/stray.cpp", {}},                                                  // no layer
  };
  const auto violations = layer_violations(includes);
  REQUIRE(violations.size() == 2);
  CHECK(violations[0] == "harness/model/moe_layer.h (model) includes harness/convert/conversion.h "
                         "(convert, a layer above)");
  CHECK(violations[1].rfind("harness/stray.cpp: in no layer", 0) == 0);
}

TEST_CASE("README's layer map lists the layers in the checked order", "[layers]") {
  std::string map;
  for (const auto& [folder, name] : kLayers) map += (map.empty() ? "`" : " → `") + name + "`";
  std::ifstream readme(std::string(MOELAB_SOURCE_DIR) + "/README.md");
  std::stringstream text;
  text << readme.rdbuf();
  INFO("expected in README.md: " << map);
  CHECK(text.str().find(map) != std::string::npos);
}
