// Random search: parsing the space and drawing the trials (see search.h).
#include "harness/sweep/search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "harness/core/error.h"
#include "harness/core/fields.h"
#include "harness/core/parse.h"
#include "harness/core/rng.h"
#include "harness/sweep/sweep_yaml.h"

namespace moelab {
namespace {

constexpr int64_t kMaxTrials = 10000;
const std::vector<std::string> kSearchKeys = {"method", "trials", "seed", "space", "prune"};
const std::vector<std::string> kDistributions = {"uniform", "log_uniform", "int", "choice"};

// " (did you mean 'x'?)" when a candidate is close to `word`, else nothing.
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string nearest = nearest_name(word, candidates);
  return nearest.empty() ? "" : fmt::format(" (did you mean '{}'?)", nearest);
}

enum class Distribution { Uniform, LogUniform, Int, Choice };

struct Dimension {
  Distribution kind = Distribution::Uniform;
  double low = 0, high = 0;      // Uniform, LogUniform, Int
  std::vector<YAML::Node> items;  // Choice
};

int64_t whole_number(const YAML::Node& node, const std::string& what, const std::string& source) {
  const auto value = node.IsScalar() ? parse_int64(node.Scalar()) : std::nullopt;
  if (!value) {
    throw ConfigError(fmt::format("{}: {} must be a whole number, not '{}'", where(source, node), what, flow(node)));
  }
  return *value;
}

double number(const YAML::Node& node, const std::string& what, const std::string& source) {
  const auto value = node.IsScalar() ? parse_double(node.Scalar()) : std::nullopt;
  if (value && std::isfinite(*value)) return *value;
  throw ConfigError(fmt::format("{}: {} must be a number, not '{}'", where(source, node), what, flow(node)));
}

// `key: {kind: [...]}` of the space.
Dimension read_dimension(const std::string& key, const YAML::Node& node, const std::string& source) {
  const std::string what = "search.space." + key;
  if (!node.IsMap() || node.size() != 1) {
    throw ConfigError(fmt::format("{}: {} must be one of {{uniform: [low, high]}}, {{log_uniform: "
                                  "[low, high]}}, {{int: [low, high]}}, {{choice: [values]}}",
                                  where(source, node), what));
  }
  const auto item = *node.begin();
  const std::string name = item.first.as<std::string>();
  const YAML::Node& args = item.second;
  Dimension d;
  if (name == "choice") {
    if (!args.IsSequence() || args.size() == 0) {
      throw ConfigError(fmt::format("{}: {}: choice takes a non-empty list", where(source, args), what));
    }
    d.kind = Distribution::Choice;
    for (const auto& value : args) d.items.push_back(value);
    return d;
  }
  if (name == "uniform") d.kind = Distribution::Uniform;
  else if (name == "log_uniform") d.kind = Distribution::LogUniform;
  else if (name == "int") d.kind = Distribution::Int;
  else {
    throw ConfigError(fmt::format("{}: {}: unknown distribution '{}'{}; uniform, log_uniform, int "
                                  "or choice",
                                  where(source, item.first), what, name, suggestion(name, kDistributions)));
  }
  if (!args.IsSequence() || args.size() != 2) {
    throw ConfigError(fmt::format("{}: {}: {} takes [low, high]", where(source, args), what, name));
  }
  if (d.kind == Distribution::Int) {
    d.low = static_cast<double>(whole_number(args[0], what + " low", source));
    d.high = static_cast<double>(whole_number(args[1], what + " high", source));
  } else {
    d.low = number(args[0], what + " low", source);
    d.high = number(args[1], what + " high", source);
  }
  if (!(d.low < d.high)) {
    throw ConfigError(fmt::format("{}: {}: low {} must be below high {}", where(source, args), what,
                                  flow(args[0]), flow(args[1])));
  }
  if (d.kind == Distribution::LogUniform && d.low <= 0) {
    throw ConfigError(fmt::format("{}: {}: log_uniform needs low > 0, not {}", where(source, args[0]),
                                  what, flow(args[0])));
  }
  return d;
}

// One draw of `d` from u in [0, 1): (value as flow YAML, label).
std::pair<std::string, std::string> draw(const Dimension& d, double u) {
  switch (d.kind) {
    case Distribution::Uniform: {
      const double v = d.low + u * (d.high - d.low);
      return {fmt::format("{}", v), fmt::format("{:.4g}", v)};
    }
    case Distribution::LogUniform: {
      const double v = std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low)));
      return {fmt::format("{}", v), fmt::format("{:.4g}", v)};
    }
    case Distribution::Int: {
      const auto v = static_cast<int64_t>(d.low) + static_cast<int64_t>(std::floor(u * (d.high - d.low + 1)));
      return {std::to_string(v), std::to_string(v)};
    }
    case Distribution::Choice: {
      const auto& item = d.items[static_cast<size_t>(std::floor(u * static_cast<double>(d.items.size())))];
      return {flow(item), display(item)};
    }
  }
  throw InternalError("search: unknown distribution");
}

void check_search_keys(const YAML::Node& search, const std::string& source) {
  if (!search.IsMap()) {
    throw ConfigError(fmt::format("{}: search must be a mapping of method, trials, seed and space",
                                  where(source, search)));
  }
  for (const auto& item : search) {
    const std::string key = item.first.as<std::string>();
    if (std::find(kSearchKeys.begin(), kSearchKeys.end(), key) == kSearchKeys.end()) {
      throw ConfigError(fmt::format("{}: unknown search key '{}'{}; valid keys: method, trials, "
                                    "seed, space, prune",
                                    where(source, item.first), key, suggestion(key, kSearchKeys)));
    }
  }
  for (const char* required : {"method", "trials", "space"}) {
    if (!search[required]) {
      throw ConfigError(fmt::format("{}: search needs '{}'", where(source, search), required));
    }
  }
  if (!search["method"].IsScalar() || search["method"].Scalar() != "random") {
    throw ConfigError(fmt::format("{}: search.method: '{}' is not a search method; the one so far "
                                  "is random",
                                  where(source, search["method"]), flow(search["method"])));
  }
  if (search["prune"]) {
    throw ConfigError(fmt::format("{}: search.prune: pruning (ASHA) is not implemented yet; remove "
                                  "the key to train every trial to train.steps",
                                  where(source, search["prune"])));
  }
}

}  // namespace

SearchTrials sample_search(const YAML::Node& search, const std::string& source) {
  check_search_keys(search, source);
  const int64_t trials = whole_number(search["trials"], "search.trials", source);
  if (trials < 1 || trials > kMaxTrials) {
    throw ConfigError(fmt::format("{}: search.trials must be 1 to {}, not {}", where(source, search["trials"]),
                                  kMaxTrials, trials));
  }
  const int64_t seed = search["seed"] ? whole_number(search["seed"], "search.seed", source) : 0;
  if (seed < 0) throw ConfigError(fmt::format("{}: search.seed must be >= 0", where(source, search["seed"])));
  const YAML::Node& space = search["space"];
  if (!space.IsMap() || space.size() == 0) {
    throw ConfigError(fmt::format("{}: search.space must be a non-empty mapping of config key: "
                                  "distribution",
                                  where(source, space)));
  }
  SearchTrials out;
  std::vector<Dimension> dimensions;
  for (const auto& item : space) {
    out.keys.push_back(item.first.as<std::string>());
    out.key_nodes.push_back(item.first);
    out.origins.push_back(where(source, item.second));
    dimensions.push_back(read_dimension(out.keys.back(), item.second, source));
  }
  for (int64_t trial = 0; trial < trials; ++trial) {
    std::vector<std::string> values, labels;
    for (size_t k = 0; k < dimensions.size(); ++k) {
      Rng rng = Rng::keyed({static_cast<uint64_t>(seed), fnv1a("search"), fnv1a(out.keys[k]),
                            static_cast<uint64_t>(trial)});
      auto [value, label] = draw(dimensions[k], rng.uniform());
      values.push_back(std::move(value));
      labels.push_back(std::move(label));
    }
    out.values.push_back(std::move(values));
    out.labels.push_back(std::move(labels));
  }
  return out;
}

}  // namespace moelab
