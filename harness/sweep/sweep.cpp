// Sweep file parsing and expansion.
#include "harness/sweep/sweep.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "harness/core/parse.h"
#include "harness/core/text_file.h"
#include "harness/core/yaml_path.h"
#include "harness/run/runner.h"
#include "harness/sweep/search.h"
#include "harness/sweep/sweep_yaml.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

struct Axis {
  std::vector<std::string> keys;                  // one key, or several for a zip
  std::vector<std::vector<std::string>> values;   // values[i][key] as flow YAML
  std::vector<std::vector<std::string>> labels;   // the same, as written for display
  std::vector<std::vector<std::string>> origins;  // where each was written ("" = command line)
  std::string tag;  // when set, each run's label starts "tag=row" (search trials: trial=3)
};

// Every key a run config can have: its fields with the options of every registered task and
// router (under task., router. and eval.router_override.), sorted.
const std::vector<std::string>& known_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::set<std::string> all;
    RunConfig config;
    auto add = [&] {
      for (const auto& row : list_fields(config)) all.insert(row.path);
    };
    add();
    for (const auto& entry : router_registry()) {
      config.router.name = config.eval.router_override.name = entry.name;
      config.router.reset_options();
      config.eval.router_override.reset_options();
      add();
    }
    for (const auto& entry : task_registry()) {
      config.task.name = entry.name;
      config.task.reset_options();
      add();
    }
    return std::vector<std::string>(all.begin(), all.end());
  }();
  return keys;
}

// `key` (written at `node`) names a config key or section, or ConfigError with the nearest.
void check_config_key(const std::string& key, const YAML::Node& node, const std::string& source,
                      const std::string& what) {
  const auto& keys = known_config_keys();
  const bool known = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
    return k == key || k.rfind(key + ".", 0) == 0;
  });
  if (known) return;
  const std::string hint = nearest_name(key, keys);
  throw ConfigError(fmt::format("{}: {}: '{}' is not a config key{}; `moelab list config` lists "
                                "them",
                                where(source, node), what, key,
                                hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
}

// A sweep-file section that must be a mapping (grid, zip, base, an exclude entry).
void require_map(const YAML::Node& node, const std::string& source, const std::string& what) {
  if (!node.IsMap()) {
    throw ConfigError(fmt::format("{}: {} must be a mapping of {}", where(source, node), what,
                                  what == "base" ? "run config sections" : "config key: value"));
  }
}

struct ListValues {
  std::vector<std::string> values, labels, origins;
};
ListValues list_values(const YAML::Node& list, const std::string& what, const std::string& source) {
  if (!list.IsSequence() || list.size() == 0) {
    throw ConfigError(fmt::format("{}: {} must be a non-empty list", where(source, list), what));
  }
  ListValues out;
  for (const auto& value : list) {
    out.values.push_back(flow(value));
    out.labels.push_back(display(value));
    out.origins.push_back(where(source, value));
  }
  return out;
}

// Splits "a,b,c" at top-level commas (not inside {} or []).
std::vector<std::string> split_top_level(const std::string& text) {
  std::vector<std::string> parts;
  int depth = 0;
  std::string current;
  for (char c : text) {
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  return parts;
}

bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  const auto x = parse_double(a), y = parse_double(b);
  return x && y && *x == *y;
}

// More seeds than any sweep runs is a typo (seeds: 100000000 would allocate the queue first).
constexpr int64_t kMaxSeeds = 10000;

// Seeds 0..count-1.
std::vector<int64_t> seed_range(int64_t count) {
  std::vector<int64_t> seeds(static_cast<size_t>(count));
  std::iota(seeds.begin(), seeds.end(), 0);
  return seeds;
}

// `seeds:` in a sweep file: a count N (seeds 0..N-1) or a list of seeds.
std::vector<int64_t> seeds_from_yaml(const YAML::Node& node, const std::string& source) {
  auto seed_value = [&](const YAML::Node& item) {
    const auto value = item.IsScalar() ? parse_int64(item.Scalar()) : std::nullopt;
    if (!value || *value < 0) {
      throw ConfigError(fmt::format("{}: seeds takes a count (seeds: 3 for seeds 0, 1, 2) or a "
                                    "list of non-negative integer seeds, not '{}'",
                                    where(source, item), display(item)));
    }
    return *value;
  };
  if (node.IsSequence()) {
    std::vector<int64_t> seeds;
    for (const auto& item : node) seeds.push_back(seed_value(item));
    if (seeds.empty() || static_cast<int64_t>(seeds.size()) > kMaxSeeds) {
      throw ConfigError(fmt::format("{}: 1 to {} seeds", where(source, node), kMaxSeeds));
    }
    return seeds;
  }
  const int64_t count = seed_value(node);
  if (count < 1 || count > kMaxSeeds) {
    throw ConfigError(fmt::format("{}: seeds must be 1 to {}, not {}", where(source, node),
                                  kMaxSeeds, count));
  }
  return seed_range(count);
}

// `seeds=N` (seeds 0..N-1) or `seeds=a,b,c` on the command line.
std::vector<int64_t> seeds_from_override(const std::string& assignment,
                                         const std::vector<std::string>& values) {
  std::vector<int64_t> list;
  for (const auto& value : values) {
    const int64_t number = parse_int64(value).value_or(-1);
    if (number < 0 || (values.size() == 1 && (number < 1 || number > kMaxSeeds))) {
      throw ConfigError(fmt::format(
          "override '{}': seeds takes a count (seeds=3 for seeds 0, 1, 2) or a list of "
          "seeds (seeds=0,7,42); a count is at most 10000",
          assignment));
    }
    list.push_back(number);
  }
  return values.size() > 1 ? list : seed_range(list.front());
}

// A command-line `key=v` (every run) or `key=a,b` (a grid axis); either replaces the file's
// axis for that key, and a zipped key takes a single value for its column.
void apply_override(const std::string& assignment, const std::string& key,
                    const std::vector<std::string>& values, std::vector<Axis>& axes,
                    std::vector<std::string>& fixed_overrides) {
  auto swept = std::find_if(axes.begin(), axes.end(), [&](const Axis& axis) {
    return std::find(axis.keys.begin(), axis.keys.end(), key) != axis.keys.end();
  });
  if (swept != axes.end() && swept->keys.size() > 1) {
    if (values.size() > 1) {
      throw ConfigError(fmt::format("override '{}': {} is swept together with {} in the sweep "
                                    "file (zip or search); a single value replaces it, a list cannot",
                                    assignment, key, fmt::join(swept->keys, ", ")));
    }
    const auto column = static_cast<size_t>(
        std::find(swept->keys.begin(), swept->keys.end(), key) - swept->keys.begin());
    for (size_t row = 0; row < swept->values.size(); ++row) {
      swept->values[row][column] = swept->labels[row][column] = values.front();
      swept->origins[row][column] = "";
    }
    return;
  }
  if (swept != axes.end()) axes.erase(swept);
  if (values.size() == 1) {
    fixed_overrides.push_back(assignment);
    return;
  }
  Axis axis;
  axis.keys = {key};
  for (const auto& value : values) {
    axis.values.push_back({value});
    axis.labels.push_back({value});
    axis.origins.push_back({""});
  }
  axes.push_back(axis);
}

// The invalid combinations, one line per distinct error with the axis values that produced
// it; an error every combination shares (a bad override, say) is stated once.
std::string combination_errors(const std::string& source,
                               const std::vector<std::pair<std::string, std::string>>& failed,
                               size_t combinations) {
  std::vector<std::pair<std::string, std::vector<std::string>>> by_error;  // first-seen order
  for (const auto& [label, error] : failed) {
    auto same = std::find_if(by_error.begin(), by_error.end(),
                             [&, &error = error](const auto& entry) { return entry.first == error; });
    if (same == by_error.end()) {
      by_error.push_back({error, {label}});
    } else {
      same->second.push_back(label);
    }
  }
  if (by_error.size() == 1 && failed.size() == combinations && combinations > 1) {
    return fmt::format("{}: all {} combinations are invalid: {}", source, combinations,
                       by_error.front().first);
  }
  std::string text = fmt::format("{}: {} invalid combination(s):", source, failed.size());
  for (const auto& [error, labels] : by_error) {
    text += fmt::format("\n  [{}] {}", fmt::join(labels, "], ["), error);
  }
  return text;
}

}  // namespace

std::string SweepRun::label() const {
  std::string text;
  for (const auto& [key, value] : axes) {
    if (!text.empty()) text += ' ';
    text += key + "=" + value;
  }
  return text;
}

SweepPlan expand_sweep(const std::string& path, const std::vector<std::string>& overrides,
                       const std::vector<std::string>& launcher_settings) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  SweepPlan plan = expand_sweep_text(read_text_file(path), path, dir.empty() ? "." : dir, overrides,
                                     launcher_settings);
  if (plan.name.empty()) plan.name = std::filesystem::path(path).stem().string();
  return plan;
}

namespace {

void check_sweep_keys(const YAML::Node& root, const std::string& source) {
  static const std::set<std::string> kKeys = {"name", "base", "extends", "grid", "zip", "search",
                                              "seeds", "exclude", "launcher"};
  if (!root.IsMap()) {
    throw ConfigError(fmt::format("{}: a sweep file is a mapping of name, extends, base, grid, "
                                  "zip, search, seeds, exclude and launcher",
                                  where(source, root)));
  }
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    if (!kKeys.count(key)) {
      throw ConfigError(fmt::format(
          "{}: unknown sweep key '{}' (did you mean '{}'?); valid keys: name, base, extends, "
          "grid, zip, search, seeds, exclude, launcher",
          where(source, item.first), key,
          nearest_name(key, std::vector<std::string>(kKeys.begin(), kKeys.end()))));
    }
    if ((key == "name" || key == "extends") && !item.second.IsScalar()) {
      throw ConfigError(fmt::format("{}: {} must be a single value", where(source, item.second), key));
    }
    if (key == "grid" || key == "zip" || key == "base") require_map(item.second, source, key);
    if (key == "exclude" && !item.second.IsSequence()) {
      throw ConfigError(fmt::format("{}: exclude must be a list of mappings (- {{key: value}})",
                                    where(source, item.second)));
    }
  }
}

// The base run config: `extends` (a run config file, its errors naming its lines), and
// `base` as overrides over it, each naming its place in the sweep file.
struct BaseConfig {
  std::string yaml;
  std::string source;               // the file its errors name
  std::vector<Override> overrides;  // from `base`
};

// Every value of a `base` mapping as "dotted.key=value", mappings flattened (so they merge
// into the extended file's sections), with the place of its key.
void flatten_base(const YAML::Node& node, const std::string& prefix, const std::string& source,
                  std::vector<Override>& out) {
  for (const auto& item : node) {
    const std::string key = prefix + item.first.as<std::string>();
    if (item.second.IsMap()) {
      flatten_base(item.second, key + ".", source, out);
    } else {
      out.push_back({key + "=" + flow(item.second), where(source, item.first)});
    }
  }
}

BaseConfig base_config(const YAML::Node& root, const std::string& source,
                       const std::string& base_dir) {
  BaseConfig base{"{}", source, {}};
  if (root["extends"]) {
    const std::filesystem::path named = root["extends"].Scalar();  // absolute, or relative to the file
    const std::string file = named.is_absolute() ? named.string() : base_dir + "/" + named.string();
    if (!std::filesystem::is_regular_file(file)) {
      throw ConfigError(fmt::format("{}: extends: '{}' is not a run config file",
                                    where(source, root["extends"]), file));
    }
    base.yaml = read_text_file(file);
    base.source = file;
  }
  if (root["base"]) flatten_base(root["base"], "", source, base.overrides);
  return base;
}

// One axis per grid key, in file order.
std::vector<Axis> grid_axes(const YAML::Node& root, const std::string& source) {
  std::vector<Axis> axes;
  if (!root["grid"]) return axes;
  for (const auto& item : root["grid"]) {
    Axis axis;
    axis.keys = {item.first.as<std::string>()};
    check_config_key(axis.keys[0], item.first, source, "grid");
    const ListValues list = list_values(item.second, "grid." + axis.keys[0], source);
    for (size_t i = 0; i < list.values.size(); ++i) {
      axis.values.push_back({list.values[i]});
      axis.labels.push_back({list.labels[i]});
      axis.origins.push_back({list.origins[i]});
    }
    axes.push_back(axis);
  }
  return axes;
}

// The search's trials as one axis of its keys, each row labelled trial=N; none when absent.
// A key the grid or the zip sweeps already is an error (which would win is not obvious).
std::optional<Axis> search_axis(const YAML::Node& root, const std::string& source,
                                const std::vector<Axis>& file_axes) {
  if (!root["search"]) return std::nullopt;
  SearchTrials trials = sample_search(root["search"], source);
  Axis axis;
  axis.tag = "trial";
  axis.keys = trials.keys;
  for (size_t k = 0; k < trials.keys.size(); ++k) {
    check_config_key(trials.keys[k], trials.key_nodes[k], source, "search.space");
    for (const auto& other : file_axes) {
      if (std::find(other.keys.begin(), other.keys.end(), trials.keys[k]) != other.keys.end()) {
        throw ConfigError(fmt::format("{}: search.space: {} is swept by the grid or the zip too",
                                      where(source, trials.key_nodes[k]), trials.keys[k]));
      }
    }
  }
  axis.values = std::move(trials.values);
  axis.labels = std::move(trials.labels);
  axis.origins.assign(axis.values.size(), trials.origins);
  return axis;
}

// The zip as one axis of several keys (lists of equal length); none when absent or empty.
std::optional<Axis> zip_axis(const YAML::Node& root, const std::string& source) {
  if (!root["zip"]) return std::nullopt;
  Axis axis;
  size_t length = 0;
  std::vector<ListValues> columns;
  for (const auto& item : root["zip"]) {
    const std::string key = item.first.as<std::string>();
    check_config_key(key, item.first, source, "zip");
    columns.push_back(list_values(item.second, "zip." + key, source));
    if (length != 0 && columns.back().values.size() != length) {
      throw ConfigError(fmt::format("{}: zip.{} has {} values, the other zip lists {}",
                                    where(source, item.second), key,
                                    columns.back().values.size(), length));
    }
    length = columns.back().values.size();
    axis.keys.push_back(key);
  }
  for (size_t i = 0; i < length; ++i) {
    std::vector<std::string> row, row_labels, row_origins;
    for (const auto& column : columns) {
      row.push_back(column.values[i]);
      row_labels.push_back(column.labels[i]);
      row_origins.push_back(column.origins[i]);
    }
    axis.values.push_back(row);
    axis.labels.push_back(row_labels);
    axis.origins.push_back(row_origins);
  }
  if (length == 0) return std::nullopt;
  return axis;
}

// Command-line overrides applied to the axes; returns the `key=value` ones every run takes
// and sets `seeds` when `seeds=` is among them.
std::vector<std::string> apply_overrides(const std::vector<std::string>& overrides,
                                         std::vector<Axis>& axes,
                                         std::optional<std::vector<int64_t>>& seeds) {
  std::vector<std::string> fixed_overrides;
  for (const auto& assignment : overrides) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos) {
      throw ConfigError(fmt::format("override '{}': expected key=value or key=a,b", assignment));
    }
    const auto values = split_top_level(assignment.substr(eq + 1));
    const std::string key = assignment.substr(0, eq);
    if (key.rfind("launcher.", 0) == 0) {
      throw ConfigError(fmt::format("override '{}': the launcher is set by options (--launcher, "
                                    "--partition, --time, ...; moelab sweep --help) or the sweep "
                                    "file's launcher: section, not by key=value",
                                    assignment));
    }
    if (key == "seeds") {
      seeds = seeds_from_override(assignment, values);
    } else {
      apply_override(assignment, key, values, axes, fixed_overrides);
    }
  }
  return fixed_overrides;
}

Axis seed_axis(const std::vector<int64_t>& seed_list) {
  Axis seeds;
  seeds.keys = {"seed"};
  for (int64_t s : seed_list) {
    seeds.values.push_back({std::to_string(s)});
    seeds.labels.push_back({std::to_string(s)});
    seeds.origins.push_back({""});
  }
  return seeds;
}

using Condition = std::vector<std::pair<std::string, std::string>>;  // key: value, all must hold

// The values `key` takes on the axes: an axis's own column, or the sub-values of an axis over
// a whole section (`router: [{name: topk}, ...]` for router.name); nullopt when not swept.
std::optional<std::vector<std::string>> swept_values(const std::string& key,
                                                     const std::vector<Axis>& axes) {
  for (const auto& axis : axes) {
    for (size_t k = 0; k < axis.keys.size(); ++k) {
      const std::string& axis_key = axis.keys[k];
      if (key != axis_key && key.rfind(axis_key + ".", 0) != 0) continue;
      std::vector<std::string> values;
      for (size_t row = 0; row < axis.values.size(); ++row) {
        if (key == axis_key) {
          values.push_back(axis.labels[row][k]);
          continue;
        }
        const YAML::Node node =
            yaml_at_path(YAML::Load(axis.values[row][k]), key.substr(axis_key.size() + 1));
        if (node) values.push_back(display(node));
      }
      return values;
    }
  }
  return std::nullopt;
}

// `exclude:` entries, each key one the file sweeps and each value one its axis takes there
// (a typo would otherwise exclude nothing, silently); checked against the file's axes, which
// the command line may then narrow or replace.
std::vector<Condition> exclusions(const YAML::Node& root, const std::string& source,
                                  const std::vector<Axis>& axes) {
  std::vector<Condition> excludes;
  if (!root["exclude"]) return excludes;
  std::vector<std::string> axis_keys;
  for (const auto& axis : axes) axis_keys.insert(axis_keys.end(), axis.keys.begin(), axis.keys.end());
  for (const auto& entry : root["exclude"]) {
    require_map(entry, source, "each exclude entry");
    Condition condition;
    for (const auto& item : entry) {
      const std::string key = item.first.as<std::string>();
      const std::string value = display(item.second);
      check_config_key(key, item.first, source, "exclude");
      condition.emplace_back(key, value);
      const auto values = swept_values(key, axes);
      if (!values) {
        throw ConfigError(fmt::format(
            "{}: exclude: '{}' is not swept by this sweep, so the entry would drop every run "
            "or none; swept keys: {}",
            where(source, item.first), key, fmt::join(axis_keys, ", ")));
      }
      const bool taken = std::any_of(values->begin(), values->end(),
                                     [&](const std::string& v) { return same_value(v, value); });
      if (!taken) {
        const std::string hint = nearest_name(value, *values);
        throw ConfigError(fmt::format("{}: exclude: {} = {} is not a value this sweep gives it{}; "
                                      "its values: {}",
                                      where(source, item.second), key, value,
                                      hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                                      fmt::join(*values, ", ")));
      }
    }
    excludes.push_back(condition);
  }
  return excludes;
}

bool excluded(RunConfig& config, const std::vector<Condition>& excludes) {
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& row : list_fields(config)) params.emplace_back(row.path, row.value);
  return std::any_of(excludes.begin(), excludes.end(), [&](const Condition& condition) {
    return std::all_of(condition.begin(), condition.end(), [&](const auto& wanted) {
      return std::any_of(params.begin(), params.end(), [&](const auto& param) {
        return param.first == wanted.first && same_value(param.second, wanted.second);
      });
    });
  });
}

// Advances the odometer (the last axis fastest); false when every combination was visited.
bool next_combination(std::vector<size_t>& index, const std::vector<Axis>& axes) {
  for (size_t a = axes.size(); a-- > 0;) {
    if (++index[a] < axes[a].values.size()) return true;
    index[a] = 0;
  }
  return false;
}

// The cartesian product of the axes (first axis slowest), each combination parsed and
// validated; the invalid ones are all reported together.
void expand_product(const BaseConfig& base, const std::vector<Axis>& axes,
                    const std::vector<std::string>& fixed_overrides,
                    const std::vector<Condition>& excludes, const std::string& source,
                    SweepPlan& plan) {
  std::vector<size_t> index(axes.size(), 0);
  std::vector<std::pair<std::string, std::string>> failed;  // (axis values, error)
  do {
    std::vector<Override> run_overrides = base.overrides;
    for (const auto& assignment : fixed_overrides) run_overrides.push_back({assignment, ""});
    SweepRun run;
    for (size_t a = 0; a < axes.size(); ++a) {
      if (!axes[a].tag.empty()) run.axes.emplace_back(axes[a].tag, std::to_string(index[a]));
      for (size_t k = 0; k < axes[a].keys.size(); ++k) {
        run_overrides.push_back({axes[a].keys[k] + "=" + axes[a].values[index[a]][k],
                                 axes[a].origins[index[a]][k]});
        run.axes.emplace_back(axes[a].keys[k], axes[a].labels[index[a]][k]);
      }
    }
    try {
      run.config = parse_run_config_with_origins(base.yaml, base.source, run_overrides);
      check_runnable(run.config);
      if (excluded(run.config, excludes)) continue;
      if (!plan.name.empty()) run.config.name = plan.name;
      plan.runs.push_back(std::move(run));
    } catch (const ConfigError& e) {
      failed.push_back({run.label(), e.what()});
    }
  } while (next_combination(index, axes));
  if (!failed.empty()) {
    size_t combinations = 1;
    for (const auto& axis : axes) combinations *= axis.values.size();
    throw ConfigError(combination_errors(source, failed, combinations));
  }
  if (plan.runs.empty()) throw ConfigError(fmt::format("{}: every combination is excluded", source));
}

void check_one_database(const SweepPlan& plan, const std::string& source) {
  for (const auto& run : plan.runs) {  // one queue, one database
    if (run.config.db != plan.runs.front().config.db) {
      throw ConfigError(fmt::format("{}: every run of a sweep uses one database: [{}] has db = "
                                    "'{}', [{}] has '{}'",
                                    source, plan.runs.front().label(),
                                    plan.runs.front().config.db, run.label(), run.config.db));
    }
  }
}

}  // namespace

SweepPlan expand_sweep_text(const std::string& yaml_text, const std::string& source,
                            const std::string& base_dir, const std::vector<std::string>& overrides,
                            const std::vector<std::string>& launcher_settings) {
  YAML::Node root = load_yaml(yaml_text, source);
  check_sweep_keys(root, source);
  SweepPlan plan;
  if (root["name"]) plan.name = root["name"].Scalar();
  plan.launcher = read_launcher(root["launcher"], source, launcher_settings);
  const BaseConfig base = base_config(root, source, base_dir);

  // Axes: grid keys one by one, the zip as one axis, command-line lists, then the seeds (a
  // `seeds=` override replaces the file's).
  std::vector<Axis> axes = grid_axes(root, source);
  if (auto zip = zip_axis(root, source)) axes.push_back(*zip);
  if (auto search = search_axis(root, source, axes)) axes.push_back(*search);
  std::optional<std::vector<int64_t>> file_seeds;
  if (root["seeds"]) file_seeds = seeds_from_yaml(root["seeds"], source);
  std::vector<Axis> file_axes = axes;
  if (file_seeds) file_axes.push_back(seed_axis(*file_seeds));
  const std::vector<Condition> excludes = exclusions(root, source, file_axes);

  std::optional<std::vector<int64_t>> seeds;
  const std::vector<std::string> fixed_overrides = apply_overrides(overrides, axes, seeds);
  if (!seeds) seeds = file_seeds;
  if (seeds && !seeds->empty()) axes.push_back(seed_axis(*seeds));

  expand_product(base, axes, fixed_overrides, excludes, source, plan);
  check_one_database(plan, source);
  return plan;
}

}  // namespace moelab
