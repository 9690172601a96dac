// Loading and validation of RunConfig (the struct definitions live in config.h).
#include "harness/config/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include "harness/core/text_file.h"
#include "harness/core/parse.h"
#include "harness/core/yaml_path.h"
#include "harness/core/sha256.h"

namespace moelab {
namespace {

// A cross-field rule's error gets where its key was set (the file's line, or the override),
// or at least the file.
ConfigError located(const ConfigError& e, const YAML::Node& root, const YamlSource& source) {
  const std::string where = e.key().empty() ? source.locate("", YAML::Node())
                                            : source.locate(e.key(), yaml_at_path(root, e.key()));
  return ConfigError(fmt::format("{}: {}", where, e.what()));
}

}  // namespace

RunConfig parse_run_config_with_origins(const std::string& yaml_text,
                                        const std::string& source_name,
                                        const std::vector<Override>& overrides) {
  YAML::Node root = load_yaml(yaml_text, source_name);
  YamlSource source{source_name, {}};
  for (const auto& entry : overrides) apply_override(root, entry.assignment, source, entry.origin);
  RunConfig config;
  YamlReader::read_struct(root, source, "", config);
  try {
    validate(config);
  } catch (const ConfigError& e) {
    throw located(e, root, source);
  }
  normalize(config);
  return config;
}

RunConfig parse_run_config(const std::string& yaml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides) {
  std::vector<Override> typed;
  for (const auto& assignment : overrides) typed.push_back({assignment, ""});
  return parse_run_config_with_origins(yaml_text, source_name, typed);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_run_config(read_text_file(path), path, overrides);
}

std::vector<int64_t> moe_layer_indices(const ModelConfig& model) {
  return model.moe.layers.resolve(model.depth);
}

ConversionKind conversion_kind(const std::string& method) {
  if (method == "none") return ConversionKind::None;
  if (method == "copy" || method == "granular" || method == "drop_upcycling") {
    return ConversionKind::Upcycle;
  }
  if (method == "prune") return ConversionKind::Prune;
  return ConversionKind::Split;
}

int64_t routed_experts(const MoeConfig& moe) {
  return moe.experts + moe.null_experts.total();
}

namespace {

bool is_parent_reference(const std::string& text) {
  if (text == "auto") return true;
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  const bool hash = text.size() >= 8 && text.size() <= 64 &&
                    text.find_first_not_of("0123456789abcdef") == std::string::npos;
  return digits || hash;
}

// The router's integer option `key` (router.k), read through the options' field list.
int64_t router_int_option(const RunConfig& config, const std::string& key) {
  for (const FieldRow& row : list_fields(*config.router.options)) {
    if (row.path == key) return std::stoll(row.value);
  }
  throw ConfigError::at_key("router." + key, fmt::format("router {} has no option '{}'",
                                                         config.router.name, key));
}

void validate_split(const RunConfig& config, const std::function<void(const std::string&)>& fail) {
  const MoeConfig& moe = config.model.moe;
  if (moe.experts * moe.expert_hidden != config.model.ffn_hidden) {
    fail(fmt::format("model.moe.experts x model.moe.expert_hidden = {} x {} must equal "
                     "model.ffn_hidden = {} (every neuron in exactly one expert)",
                     moe.experts, moe.expert_hidden, config.model.ffn_hidden));
  }
  if (config.router.name != "dot_moe") {
    fail(fmt::format("router.name = {}: split and pruned models route with dot_moe (unweighted "
                     "sum of the chosen experts, which k = E makes equal to the dense FFN)",
                     config.router.name));
  }
}

void validate_upcycle(const RunConfig& config, const std::function<void(const std::string&)>& fail) {
  const MoeConfig& moe = config.model.moe;
  const int64_t dense = config.model.ffn_hidden;
  if (dense % moe.expert_hidden != 0 || moe.experts % (dense / moe.expert_hidden) != 0) {
    fail(fmt::format("model.ffn_hidden = {} must be g x model.moe.expert_hidden = {} x g, and "
                     "model.moe.experts = {} a multiple of g (each of the g slices copied "
                     "experts / g times)",
                     dense, moe.expert_hidden, moe.experts));
  }
  const int64_t granularity = dense / moe.expert_hidden;
  if (config.convert.method == "copy" && granularity != 1) {
    fail(fmt::format("model.moe.expert_hidden = {} must equal model.ffn_hidden = {} (every "
                     "expert a whole copy); use granular for slices",
                     moe.expert_hidden, dense));
  }
  if (config.convert.method == "granular" && granularity == 1) {
    fail(fmt::format("model.moe.expert_hidden = model.ffn_hidden = {}: one slice per expert is "
                     "copy; granular needs expert_hidden = ffn_hidden / g with g >= 2",
                     dense));
  }
}

void validate_convert(const RunConfig& config) {
  const ConvertConfig& convert = config.convert;
  const ConversionKind kind = conversion_kind(convert.method);
  if (kind == ConversionKind::None) return;
  const MoeConfig& moe = config.model.moe;
  const std::function<void(const std::string&)> fail = [&](const std::string& what) {
    throw ConfigError::at_key("convert.method", fmt::format("{}: {}", convert.method, what));
  };
  if (kind == ConversionKind::Upcycle) {
    validate_upcycle(config, fail);
  } else {
    validate_split(config, fail);
  }
  if (kind == ConversionKind::Split) {
    if (moe.capacity_factor != 0) {
      fail(fmt::format("model.moe.capacity_factor = {}: split layers are dropless (0)",
                       moe.capacity_factor));
    }
    if (moe.eval_capacity_factor > 0) {
      fail(fmt::format("model.moe.eval_capacity_factor = {}: split layers are dropless (0 or -1)",
                       moe.eval_capacity_factor));
    }
    if (moe.router_grad != "sparse") fail("model.moe.router_grad = dense: a split layer trains in its masked-dense form");
  }
  if (kind == ConversionKind::Prune && pruned_ffn_hidden(config) >= config.model.ffn_hidden) {
    fail(fmt::format("router.k x model.moe.expert_hidden = {} keeps every one of the {} neurons",
                     pruned_ffn_hidden(config), config.model.ffn_hidden));
  }
  if (moe_layer_indices(config.model).empty()) fail("model.moe.layers = none converts nothing");
  if (!config.model.moe.null_experts.empty()) fail("model.moe.null_experts: a converted FFN has no null experts");
  if (moe.shared_experts > 0) fail("model.moe.shared_experts: a converted FFN has no shared experts");
  if (!is_parent_reference(convert.parent)) {
    fail(fmt::format("convert.parent = \"{}\": not auto, a run id or a config hash prefix "
                     "(>= 8 lowercase hex digits)",
                     convert.parent));
  }
  if (convert.tau_end > convert.tau_start) {
    fail(fmt::format("convert.tau_end = {} is above convert.tau_start = {}", convert.tau_end,
                     convert.tau_start));
  }
}

}  // namespace

int64_t pruned_ffn_hidden(const RunConfig& config) {
  return router_int_option(config, "k") * config.model.moe.expert_hidden;
}

RunConfig dense_parent_config(const RunConfig& config) {
  RunConfig parent = config;
  parent.name = config.name + "-dense";
  MoeConfig dense_ffns;
  dense_ffns.layers.kind = LayerSelection::Kind::None;
  parent.model.moe = dense_ffns;
  parent.router.name = "topk";
  parent.router.reset_options();
  parent.eval.router_override.name = "none";
  parent.eval.router_override.reset_options();
  parent.train.steps = config.convert.dense_steps;
  parent.train.lr = config.convert.dense_lr;
  parent.convert = ConvertConfig{};
  return parent;
}

void validate(const RunConfig& config) {
  refuse_uri_password(config.db);
  const ModelConfig& model = config.model;
  if (model.dim % model.heads != 0) {
    throw ConfigError::at_key("model.heads", fmt::format("{}: must divide model.dim = {}",
                                                         model.heads, model.dim));
  }
  moe_layer_indices(model);
  if (config.device != "cpu" && config.device.rfind("cuda", 0) != 0) {
    throw ConfigError::at_key("device", fmt::format("\"{}\": must be cpu, cuda or cuda:N", config.device));
  }
  if (config.router.name == "none") {
    throw ConfigError::at_key("router.name", "\"none\": a run needs a router (moelab list routers)");
  }
  const int64_t experts = routed_experts(model.moe);
  validate_router_options(config.router.name, *config.router.options, model.dim, experts);
  if (model.moe.router_dtype == "fp64" && !router_has_logits(config.router.name)) {
    throw ConfigError::at_key("model.moe.router_dtype",
                              fmt::format("fp64: router {} has no linear logits to compute in fp64 "
                                          "(hash, soft_moe, stablemoe and xmoe have none)",
                                          config.router.name));
  }
  const PluginChoice& swap = config.eval.router_override;
  if (swap.name != "none") {
    try {
      validate_router_options(swap.name, *swap.options, model.dim, experts);
    } catch (const ConfigError& e) {
      throw e.rekeyed("router.", "eval.router_override.");
    }
  }
  if (config.train.aux_scope == "global_batch" && config.train.grad_accum == 1) {
    throw ConfigError::at_key("train.aux_scope",
                              "\"global_batch\": needs train.grad_accum > 1 (with one "
                              "micro-batch per step it is micro_batch)");
  }
  const double eval_capacity = config.model.moe.eval_capacity_factor;
  if (eval_capacity < 0 && eval_capacity != -1.0) {
    throw ConfigError::at_key("model.moe.eval_capacity_factor",
                              fmt::format("{}: -1 (as capacity_factor), 0 (dropless) or a factor > 0",
                                          eval_capacity));
  }
  if (config.train.trace_every > 0 && config.eval.probe_examples == 0) {
    throw ConfigError::at_key("train.trace_every",
                              fmt::format("{}: traces route the probe examples; "
                                          "eval.probe_examples = 0 turns them off",
                                          config.train.trace_every));
  }
  const TrainBudget& budget = config.train.budget;
  if (budget.unit == TrainBudget::Unit::Steps && budget.amount > static_cast<double>(config.train.steps)) {
    throw ConfigError::at_key("train.budget",
                              fmt::format("\"{}\": more steps than train.steps = {}, its cap",
                                          budget.canonical(), config.train.steps));
  }
  validate_convert(config);
}

void normalize(RunConfig& config) {
  // A budget in steps is a shorter run (the schedule runs over the budget either way).
  if (config.train.budget.unit == TrainBudget::Unit::Steps) {
    config.train.steps = static_cast<int64_t>(config.train.budget.amount);
    config.train.budget = TrainBudget{};
  }
  config.model.moe.layers = config.model.moe.layers.normalized(config.model.depth);
}

std::string canonical_yaml(const RunConfig& config) {
  RunConfig canonical = config;
  normalize(canonical);
  return canonical_yaml(canonical, false);
}

std::string config_hash(const RunConfig& config) {
  RunConfig canonical = config;
  normalize(canonical);
  return sha256_hex(canonical_yaml(canonical, true));
}

}  // namespace moelab
