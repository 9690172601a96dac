// The layer check: the source folders are layers, bottom to top, and a file includes headers
// of its own layer and the layers below it only; in the link graph too, an object file uses
// symbols defined in its own layer and those below only (a declaration written without its
// header, or a function defined above, would pass the include check). README's layer map
// lists the same order.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
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

// The link graph of moelab_lib: per source file (its object file's path minus ".o"), the
// moelab symbols it defines (global, strong or weak) and those it leaves undefined (mangled).
struct ObjectSymbols {
  std::set<std::string> defined, needed;
};
using LinkGraph = std::map<std::string, ObjectSymbols>;

std::vector<std::string> command_lines(const std::string& command) {
  std::vector<std::string> lines;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  std::string line;
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) {
    line += buffer;
    if (line.back() == '\n') {
      line.pop_back();
      lines.push_back(line);
      line.clear();
    }
  }
  REQUIRE(::pclose(pipe) == 0);
  return lines;
}

LinkGraph link_graph(const std::filesystem::path& objects) {
  LinkGraph graph;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(objects)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".o") continue;
    const std::string object = entry.path().string();
    std::string source = std::filesystem::relative(entry.path(), objects).string();
    source.resize(source.size() - 2);  // "harness/config/config.cpp.o" -> ".cpp"
    ObjectSymbols& symbols = graph[source];
    // nm -P: "NAME TYPE [VALUE SIZE]"; upper-case types are global, U is undefined.
    for (const auto& line : command_lines("nm -P '" + object + "'")) {
      const auto space = line.find(' ');
      const std::string name = line.substr(0, space);
      const char type = line.size() > space + 1 ? line[space + 1] : '?';
      if (name.find("6moelab") == std::string::npos) continue;  // mangled namespace moelab
      if (type == 'U') {
        symbols.needed.insert(name);
      } else if (type >= 'A' && type <= 'Z') {
        symbols.defined.insert(name);
      }
    }
  }
  return graph;
}

// Every use of a symbol that only a layer above defines, one line each.
std::vector<std::string> link_violations(const LinkGraph& graph) {
  std::map<std::string, std::vector<std::string>> definers;  // symbol -> sources defining it
  for (const auto& [source, symbols] : graph) {
    for (const auto& name : symbols.defined) definers[name].push_back(source);
  }
  std::vector<std::string> found;
  for (const auto& [source, symbols] : graph) {
    const int own = layer_of(source);
    for (const auto& name : symbols.needed) {
      const auto where = definers.find(name);
      if (where == definers.end()) continue;  // outside moelab_lib (a main, a library)
      int lowest = static_cast<int>(kLayers.size());
      for (const auto& definer : where->second) lowest = std::min(lowest, layer_of(definer));
      if (own >= 0 && lowest > own) {
        found.push_back(source + " (" + kLayers[own].second + ") uses " + name +
                        ", defined only in " + where->second.front() + " (" +
                        kLayers[lowest].second + ", a layer above)");
      }
    }
  }
  return found;
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

TEST_CASE("in the link graph too, a layer uses only symbols its layer or those below define",
          "[layers]") {
  const LinkGraph graph = link_graph(MOELAB_LIB_OBJECTS);
  REQUIRE(graph.size() > 50);  // every object file of moelab_lib was read
  REQUIRE(graph.count("harness/config/config.cpp") == 1);
  const auto violations = link_violations(graph);
  INFO(joined(violations));
  CHECK(violations.empty());
}

TEST_CASE("the link check finds a call into a layer above", "[layers]") {
  LinkGraph graph;
  graph["harness/config/config.cpp"].needed = {"_ZN6moelab12routers_callEv", "_ZN6moelab4coreEv"};
  graph["harness/core/fields.cpp"].defined = {"_ZN6moelab4coreEv"};
  graph["routers/registry.cpp"].defined = {"_ZN6moelab12routers_callEv"};
  graph["routers/topk.cpp"].needed = {"_ZN6moelab4coreEv"};  // downward: fine
  const auto violations = link_violations(graph);
  REQUIRE(violations.size() == 1);
  CHECK(violations[0] == "harness/config/config.cpp (config) uses _ZN6moelab12routers_callEv, "
                         "defined only in routers/registry.cpp (routers, a layer above)");
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
