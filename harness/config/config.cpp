// Loading and validation of RunConfig (the struct definitions live in config.h).
#include "harness/config/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "harness/core/parse.h"
#include "harness/core/yaml_path.h"
#include "harness/core/sha256.h"

namespace moelab {
namespace {

// Cross-field rules name their key first ("model.heads = 3: must divide ..."): the error gets
// where that key was set (the file's line, or the override), or at least the file.
ConfigError located(const ConfigError& e, const YAML::Node& root, const YamlSource& source) {
  const std::string message = e.what();
  const std::string key = message.substr(0, message.find(" = "));
  if (key.size() == message.size() || key.find_first_of(" :") != std::string::npos) {
    return ConfigError(fmt::format("{}: {}", source.locate("", YAML::Node()), message));
  }
  return ConfigError(fmt::format("{}: {}", source.locate(key, yaml_at_path(root, key)), message));
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
  return config;
}

RunConfig parse_run_config(const std::string& yaml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides) {
  std::vector<Override> typed;
  for (const auto& assignment : overrides) typed.push_back({assignment, ""});
  return parse_run_config_with_origins(yaml_text, source_name, typed);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot open config file '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  return parse_run_config(text.str(), path, overrides);
}

std::vector<int64_t> moe_layer_indices(const ModelConfig& model) {
  const std::string& spec = model.moe.layers;
  std::vector<int64_t> indices;
  if (spec == "all") {
    for (int64_t i = 0; i < model.depth; ++i) indices.push_back(i);
  } else if (spec == "every_other") {
    for (int64_t i = 1; i < model.depth; i += 2) indices.push_back(i);
  } else if (spec != "none") {
    std::stringstream ss(spec);
    for (std::string item; std::getline(ss, item, ',');) {
      const auto first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
      const int64_t index =
          parse_int64(first == std::string::npos ? "" : item.substr(first, last - first + 1))
              .value_or(-1);
      if (index < 0 || index >= model.depth) {
        throw ConfigError(fmt::format(
            "model.moe.layers = \"{}\": '{}' is not all | every_other | none or a block index "
            "in [0, {}]",
            spec, item, model.depth - 1));
      }
      indices.push_back(index);
    }
  }
  return indices;
}

std::vector<std::string> null_expert_kinds(const MoeConfig& moe) {
  std::vector<std::string> kinds;
  std::stringstream list(moe.null_experts);
  for (std::string item; std::getline(list, item, ',');) {
    const auto colon = item.find(':');
    const std::string kind = item.substr(0, colon);
    const auto count = colon == std::string::npos ? std::optional<int64_t>(1)
                                                  : parse_int64(item.substr(colon + 1));
    if ((kind != "zero" && kind != "copy" && kind != "constant") || !count || *count < 1 ||
        *count > 64) {
      throw ConfigError(fmt::format(
          "model.moe.null_experts = \"{}\": '{}' is not KIND[:COUNT] with KIND zero, copy or "
          "constant and COUNT in [1, 64]",
          moe.null_experts, item));
    }
    kinds.insert(kinds.end(), static_cast<size_t>(*count), kind);
  }
  return kinds;
}

int64_t routed_experts(const MoeConfig& moe) {
  return moe.experts + static_cast<int64_t>(null_expert_kinds(moe).size());
}

namespace {

bool is_parent_reference(const std::string& text) {
  if (text == "auto") return true;
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  const bool hash = text.size() >= 8 && text.size() <= 64 &&
                    text.find_first_not_of("0123456789abcdef") == std::string::npos;
  return digits || hash;
}

void validate_convert(const RunConfig& config) {
  const ConvertConfig& convert = config.convert;
  if (convert.method == "none") return;
  const MoeConfig& moe = config.model.moe;
  auto fail = [&](const std::string& what) {
    throw ConfigError(fmt::format("convert.method = {}: {}", convert.method, what));
  };
  if (config.router.name != "dot_moe") {
    fail(fmt::format("router.name = {}: converted models route with dot_moe (unweighted sum of "
                     "the chosen experts, which k = E makes equal to the dense FFN)",
                     config.router.name));
  }
  if (moe.experts * moe.expert_hidden != config.model.ffn_hidden) {
    fail(fmt::format("model.moe.experts x model.moe.expert_hidden = {} x {} must equal "
                     "model.ffn_hidden = {} (every neuron in exactly one expert)",
                     moe.experts, moe.expert_hidden, config.model.ffn_hidden));
  }
  if (moe.capacity_factor != 0) {
    fail(fmt::format("model.moe.capacity_factor = {}: converted layers are dropless (0)",
                     moe.capacity_factor));
  }
  if (moe_layer_indices(config.model).empty()) fail("model.moe.layers = none converts nothing");
  if (!config.model.moe.null_experts.empty()) fail("model.moe.null_experts: a converted FFN has no null experts");
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

RunConfig dense_parent_config(const RunConfig& config) {
  RunConfig parent = config;
  parent.name = config.name + "-dense";
  parent.model.moe = MoeConfig{};
  parent.model.moe.layers = "none";
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
    throw ConfigError(fmt::format("model.heads = {}: must divide model.dim = {}", model.heads,
                                  model.dim));
  }
  moe_layer_indices(model);
  if (config.device != "cpu" && config.device.rfind("cuda", 0) != 0) {
    throw ConfigError(fmt::format("device = \"{}\": must be cpu, cuda or cuda:N", config.device));
  }
  if (config.router.name == "none") {
    throw ConfigError("router.name = \"none\": a run needs a router (moelab list routers)");
  }
  const int64_t experts = routed_experts(model.moe);
  validate_router_options(config.router.name, *config.router.options, model.dim, experts);
  const PluginChoice& swap = config.eval.router_override;
  if (swap.name != "none") validate_router_options(swap.name, *swap.options, model.dim, experts);
  if (config.train.aux_scope == "global_batch" && config.train.grad_accum == 1) {
    throw ConfigError("train.aux_scope = \"global_batch\": needs train.grad_accum > 1 (with one "
                      "micro-batch per step it is micro_batch)");
  }
  validate_convert(config);
}

std::string canonical_yaml(const RunConfig& config) {
  return canonical_yaml(const_cast<RunConfig&>(config), false);
}

std::string config_hash(const RunConfig& config) {
  return sha256_hex(canonical_yaml(const_cast<RunConfig&>(config), true));
}

}  // namespace moelab
