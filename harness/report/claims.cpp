// Claims files read, checked against the database, tested and rendered (harness/report/claims.h).
#include "harness/report/claims.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "harness/core/error.h"
#include "harness/core/text_file.h"
#include "harness/core/yaml_path.h"
#include "harness/report/compare.h"
#include "harness/report/report.h"
#include "harness/report/stats.h"
#include "harness/report/table.h"
#include "harness/config/config.h"
#include "routers/registry.h"
#include "tasks/registry.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// "file:line:column" of a node of the claims file.
std::string where(const std::string& source, const YAML::Node& node) {
  return YamlSource{source, {}}.locate("", node);
}

// The file that produces a claim's runs: its sweep_file (relative to the claims file's folder),
// or experiments/sweeps/<sweep>.yaml beside experiments/claims/.
std::string sweep_file_of(const Claim& claim, const std::string& claims_path) {
  const auto folder = std::filesystem::path(claims_path).parent_path();
  if (!claim.sweep_file.empty()) return (folder / claim.sweep_file).lexically_normal().string();
  return (folder / ".." / "sweeps" / (claim.sweep + ".yaml")).lexically_normal().string();
}

int64_t runs_in_sweep(Store& store, const std::string& sweep) {
  return store.query("SELECT COUNT(*) FROM runs r WHERE " MOELAB_RUN_IN_SWEEP_SQL, {sweep})
      .rows.at(0)[0]
      .integer;
}

// The task of the claim's runs: from the database, else from the sweep file's first run.
std::string task_of(Store& store, const Claim& claim, const std::string& sweep_file) {
  const auto rows = store.query("SELECT r.task FROM runs r WHERE " MOELAB_RUN_IN_SWEEP_SQL
                                " ORDER BY r.id LIMIT 1",
                                {claim.sweep});
  if (!rows.rows.empty()) return rows.rows[0][0].text;
  // The sweep file's task as written (its base, else the config it extends), without
  // expanding it: expansion checks data paths, which need not exist where claims are read.
  const YAML::Node sweep = load_yaml(read_text_file(sweep_file), sweep_file);
  if (const YAML::Node name = yaml_at_path(sweep, "base.task.name"); name && name.IsScalar()) {
    return name.Scalar();
  }
  if (const YAML::Node extends = yaml_at_path(sweep, "extends"); extends && extends.IsScalar()) {
    const auto config = std::filesystem::path(sweep_file).parent_path() / extends.Scalar();
    const YAML::Node run = load_yaml(read_text_file(config.string()), config.string());
    if (const YAML::Node name = yaml_at_path(run, "task.name"); name && name.IsScalar()) return name.Scalar();
  }
  return RunConfig{}.task.name;
}

// A claim's checks against what exists: the sweep, the metric of its task, the groups.
void check_claim(Store& store, const Claim& claim, const std::string& path, const YAML::Node& node) {
  auto at = [&](const char* key) { return where(path, node[key] ? node[key] : node); };
  const std::string sweep_file = sweep_file_of(claim, path);
  if (runs_in_sweep(store, claim.sweep) == 0 && !std::filesystem::exists(sweep_file)) {
    throw ConfigError(fmt::format("{}: claim '{}': unknown sweep '{}': no run of the database is "
                                  "in it and there is no sweep file {}",
                                  at("sweep"), claim.id, claim.sweep, sweep_file));
  }
  const std::string task = task_of(store, claim, sweep_file);
  try {
    const auto slash = claim.metric.rfind('/');
    if (slash == std::string::npos) throw Error("not SPLIT/METRIC");
    SplitId::parse(claim.metric.substr(0, slash));
    task_metrics(task).find(metric_of(claim.metric));
  } catch (const Error& e) {
    throw ConfigError(fmt::format("{}: claim '{}': metric '{}': {}", at("metric"), claim.id,
                                  claim.metric, e.what()));
  }
  std::vector<std::string> known;
  if (claim.group_by == "router" || claim.group_by == "router.name") {
    for (const auto& entry : router_registry()) known.emplace_back(entry.name);
  } else if (claim.group_by == "task" || claim.group_by == "task.name") {
    for (const auto& entry : task_registry()) known.emplace_back(entry.name);
  }
  for (const char* key : {"treatment", "baseline"}) {
    const std::string& group = std::string(key) == "treatment" ? claim.treatment : claim.baseline;
    if (known.empty() || std::find(known.begin(), known.end(), group) != known.end()) continue;
    const std::string hint = nearest_name(group, known);
    throw ConfigError(fmt::format("{}: claim '{}': unknown {} group '{}'{}", at(key), claim.id,
                                  claim.group_by, group,
                                  hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
  }
}

Claim read_claim(const YAML::Node& node, const YamlSource& source) {
  if (!node.IsMap()) {
    throw ConfigError(fmt::format("{}: a claim is a mapping (id, paper, quote, sweep, metric, ...)",
                                  where(source.file, node)));
  }
  Claim claim;
  YamlReader::read_struct(node, source, "", claim);
  for (const auto& [key, value] :
       std::vector<std::pair<const char*, const std::string*>>{
           {"id", &claim.id}, {"paper", &claim.paper}, {"quote", &claim.quote},
           {"sweep", &claim.sweep}, {"metric", &claim.metric},
           {"treatment", &claim.treatment}, {"baseline", &claim.baseline}}) {
    if (value->empty()) {
      throw ConfigError(fmt::format("{}: claim{}: '{}' is required", where(source.file, node),
                                    claim.id.empty() ? "" : " '" + claim.id + "'", key));
    }
  }
  return claim;
}

}  // namespace

ClaimsFile read_claims(const std::string& path, Store& store) {
  const YAML::Node root = load_yaml(read_text_file(path), path);
  for (const auto& entry : root) {
    if (entry.first.Scalar() != "claims") {
      throw ConfigError(fmt::format("{}: unknown key '{}' (a claims file has one key: claims)",
                                    where(path, entry.first), entry.first.Scalar()));
    }
  }
  const YAML::Node list = root["claims"];
  if (!list || !list.IsSequence() || list.size() == 0) {
    throw ConfigError(fmt::format("{}: 'claims' must be a non-empty list of claims",
                                  where(path, list ? list : root)));
  }
  const YamlSource source{path, {}};
  ClaimsFile file{path, {}};
  std::set<std::string> ids;
  for (const auto& node : list) {
    Claim claim = read_claim(node, source);
    if (!ids.insert(claim.id).second) {
      throw ConfigError(fmt::format("{}: claim id '{}' appears twice", where(path, node["id"]), claim.id));
    }
    check_claim(store, claim, path, node);
    file.claims.push_back(std::move(claim));
  }
  return file;
}

namespace {

std::optional<double> mean_summary(Store& store, const std::vector<int64_t>& runs,
                                   const std::string& name) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t run : runs) {
    const auto rows = store.query("SELECT value FROM summaries WHERE run_id = ? AND name = ? AND "
                                  "value IS NOT NULL",
                                  {run, name});
    if (rows.rows.empty()) return std::nullopt;  // unknown for one run: unknown
    sum += rows.rows[0][0].number();
    ++n;
  }
  if (n == 0) return std::nullopt;
  return sum / static_cast<double>(n);
}

Scale scale_of(Store& store, const std::vector<int64_t>& runs) {
  Scale scale;
  scale.runs = static_cast<int64_t>(runs.size());
  scale.parameters = mean_summary(store, runs, "model/parameters");
  scale.tokens = mean_summary(store, runs, "train/tokens");
  scale.flops = mean_summary(store, runs, "train/flops");
  scale.steps = mean_summary(store, runs, "train/steps");  // steps taken (a budget may end a run early)
  if (scale.steps) return scale;
  double steps = 0;  // runs from before train/steps was recorded: the configured steps
  for (int64_t run : runs) {
    const auto rows = store.query("SELECT value FROM params WHERE run_id = ? AND key = 'train.steps'", {run});
    if (rows.rows.empty()) return scale;
    steps += std::stod(rows.rows[0][0].text);
  }
  if (!runs.empty()) scale.steps = steps / static_cast<double>(runs.size());
  return scale;
}

std::string missing_runs(const ClaimsFile& file, const Claim& claim, const std::string& group,
                         Store& store) {
  return fmt::format("no done run of {} '{}' in sweep '{}' has {}; produce them with: moelab "
                     "sweep {} db={}",
                     claim.group_by, group, claim.sweep, claim.metric, sweep_file_of(claim, file.path),
                     store.path());
}

std::string verdict_of(const ClaimResult& r, double alpha) {
  const Claim& c = r.claim;
  const bool shown = std::isfinite(r.p_adjusted) && r.p_adjusted < alpha;
  const bool equivalent = r.equivalent;
  if (c.direction == "equivalent") {
    if (equivalent) return "supported";
    if (r.ci_low > c.margin || r.ci_high < -c.margin) return "contradicted";
    return "inconclusive";
  }
  const bool claimed_side = c.direction == "higher" ? r.effect > 0 : r.effect < 0;
  if (shown) return claimed_side ? "supported" : "contradicted";
  if (equivalent) return "not supported";
  return "inconclusive";
}

}  // namespace

std::vector<ClaimResult> test_claims(Store& store, const ClaimsFile& file, double alpha) {
  std::vector<ClaimResult> results;
  for (const Claim& claim : file.claims) {
    ClaimResult result;
    result.claim = claim;
    result.p = result.p_adjusted = kNaN;
    const auto keys = split_keys(claim.group_by);
    std::map<std::string, std::vector<int64_t>> runs_of;
    for (const auto& group : group_done_runs(store, claim.sweep, keys)) runs_of[group.label] = group.run_ids;
    for (const std::string* group : {&claim.treatment, &claim.baseline}) {
      if (result.missing.empty() && runs_of[*group].empty()) {
        result.missing = missing_runs(file, claim, *group, store);
      }
    }
    if (result.missing.empty()) {
      CompareRequest request;
      request.sweep = claim.sweep;
      request.group_by = keys;
      request.baseline = claim.baseline;
      request.metric = claim.metric;
      request.pair_by = split_keys(claim.pair_by);
      request.margin = claim.margin;
      request.alpha = alpha;
      if (claim.at_flops > 0) request.at_flops = claim.at_flops;
      const ComparisonTable table = compare_groups(store, request);
      const auto row = std::find_if(table.rows.begin(), table.rows.end(),
                                    [&](const Comparison& r) { return r.group == claim.treatment; });
      if (row == table.rows.end()) {
        result.missing = missing_runs(file, claim, claim.treatment, store);
      } else {
        result.paired = row->paired;
        result.n = row->paired ? row->n_pairs : row->n_group;
        result.effect = row->mean_diff;
        result.ci_low = row->ci_low;
        result.ci_high = row->ci_high;
        result.p = row->p;
        result.mde = row->mde;
        result.p_equivalence = row->p_equivalence;
        result.equivalent = row->equivalent;
      }
      std::vector<int64_t> runs = runs_of[claim.treatment];
      runs.insert(runs.end(), runs_of[claim.baseline].begin(), runs_of[claim.baseline].end());
      result.scale = scale_of(store, runs);
    }
    results.push_back(std::move(result));
  }
  std::vector<double> p;
  for (const auto& r : results) p.push_back(r.p);
  const auto adjusted = holm_adjust(p);
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].p_adjusted = adjusted[i];
    results[i].verdict = results[i].missing.empty() ? verdict_of(results[i], alpha) : "missing runs";
  }
  return results;
}

namespace {

std::string amount(const std::optional<double>& value) {
  if (!value) return "unknown";
  const double v = *value;
  if (v >= 1e12) return fmt::format("{:.3g}T", v / 1e12);
  if (v >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.3g}", v);
}

std::string scale_line(const Scale& s) {
  return fmt::format("{} runs of {} parameters, {} tokens, {} training FLOPs, {} steps each: a "
                     "CPU-scale check of the claim, not a replication of the paper",
                     s.runs, amount(s.parameters), amount(s.tokens), amount(s.flops),
                     amount(s.steps));
}

nlohmann::json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}
nlohmann::json optional_json(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::string claim_text(const ClaimResult& r, size_t family) {
  const Claim& c = r.claim;
  std::string out = fmt::format("[{}] {}: \"{}\"\n  {}, {} - {} in sweep '{}', claimed {}{}, margin +-{:g}\n",
                                c.id, c.paper, c.quote, c.metric, c.treatment, c.baseline, c.sweep,
                                c.direction, c.at_flops > 0 ? fmt::format(" at {:.3g} FLOPs", c.at_flops) : "",
                                c.margin);
  if (!r.missing.empty()) return out + "  verdict: missing runs: " + r.missing + "\n";
  out += fmt::format("  n = {} {}, effect {:+.4g} [95% CI {:.4g}, {:.4g}], p = {:.3g}, Holm-adjusted "
                     "p = {:.3g} (over {} claims), MDE {:.3g}, equivalence p = {:.3g}\n",
                     r.n, r.paired ? "pairs" : "runs (unpaired, Welch)", r.effect, r.ci_low,
                     r.ci_high, r.p, r.p_adjusted, family, r.mde, r.p_equivalence);
  out += "  verdict: " + r.verdict + "\n  scale: " + scale_line(r.scale) + "\n";
  return out;
}

}  // namespace

std::string render_claims(const std::vector<ClaimResult>& results, const ClaimsFile& file,
                          const std::string& db, const std::string& format) {
  const std::string header = fmt::format(
      "Claims of {} tested on {}: paired by seed where runs pair (moelab compare), 95% t "
      "intervals, p Holm-adjusted over the {} claims; supported / contradicted: that direction "
      "shown (adjusted p < 0.05); not supported: equivalent within the margin (TOST); "
      "inconclusive: neither.\n",
      file.path, db, results.size());
  if (format == "text") {
    std::string out = header + "\n";
    for (const auto& r : results) out += claim_text(r, results.size()) + "\n";
    return out;
  }
  if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : results) {
      const Claim& c = r.claim;
      rows.push_back({{"id", c.id}, {"verdict", r.verdict}, {"n", r.n}, {"paired", r.paired},
                      {"effect", number_or_null(r.effect)}, {"ci_low", number_or_null(r.ci_low)},
                      {"ci_high", number_or_null(r.ci_high)}, {"p", number_or_null(r.p)},
                      {"p_adjusted", number_or_null(r.p_adjusted)}, {"mde", number_or_null(r.mde)},
                      {"p_equivalence", number_or_null(r.p_equivalence)},
                      {"paper", c.paper}, {"quote", c.quote}, {"sweep", c.sweep},
                      {"metric", c.metric}, {"treatment", c.treatment}, {"baseline", c.baseline},
                      {"direction", c.direction}, {"margin", c.margin},
                      {"missing", r.missing.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.missing)},
                      {"scale", {{"runs", r.scale.runs}, {"parameters", optional_json(r.scale.parameters)},
                                 {"tokens", optional_json(r.scale.tokens)},
                                 {"flops", optional_json(r.scale.flops)},
                                 {"steps", optional_json(r.scale.steps)}}}});
    }
    return rows.dump(2) + "\n";
  }
  QueryResult table;
  table.columns = {"id", "claim", "verdict", "n", "effect", "95% CI", "p (Holm)", "MDE", "scale"};
  for (const auto& r : results) {
    const Claim& c = r.claim;
    auto text = [](const std::string& s) { return Cell{Cell::Type::Text, 0, 0.0, s}; };
    const bool ran = r.missing.empty();
    table.rows.push_back(
        {text(c.id), text(fmt::format("{} {} than {} on {} ({})", c.treatment, c.direction, c.baseline, c.metric, c.paper)),
         text(ran ? r.verdict : "missing runs: " + r.missing),
         text(ran ? fmt::format("{}{}", r.n, r.paired ? "" : " (Welch)") : ""),
         text(ran ? fmt::format("{:+.4g}", r.effect) : ""),
         text(ran ? fmt::format("[{:.4g}, {:.4g}]", r.ci_low, r.ci_high) : ""),
         text(ran ? fmt::format("{:.3g}", r.p_adjusted) : ""),
         text(ran ? fmt::format("{:.3g}", r.mde) : ""),
         text(ran ? scale_line(r.scale) : "")});
  }
  if (format == "md") return header + "\n" + format_markdown(table);
  if (format == "html") {
    std::string out = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moelab claims</title>"
                      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
                      "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}</style></head><body>\n"
                      "<h1>Claims</h1>\n<p>" + escape_html(header) + "</p>\n<table>\n<tr>";
    for (const auto& column : table.columns) out += "<th>" + escape_html(column) + "</th>";
    out += "</tr>\n";
    for (size_t i = 0; i < table.rows.size(); ++i) {
      out += "<tr>";
      for (const auto& cell : table.rows[i]) out += "<td>" + escape_html(cell.text) + "</td>";
      out += "</tr>\n<tr><td></td><td colspan=\"8\"><q>" + escape_html(results[i].claim.quote) + "</q></td></tr>\n";
    }
    return out + "</table>\n</body></html>\n";
  }
  throw ConfigError(fmt::format("claims: unknown format '{}' (text, md, json, html)", format));
}

}  // namespace moelab
