// The seam between the config layer and the plugin registries above it (routers/, tasks/):
// the config creates a plugin's typed options by name and checks router options against the
// model's shape through a catalog of functions that the program installs at start-up
// (install_plugins in harness/run/plugins.h, called by the moelab and test mains). So the
// config layer neither includes nor links anything above it; the layers test checks both.
#pragma once

#include <memory>
#include <string>

#include "harness/core/fields.h"

namespace moelab {

struct PluginCatalog {
  // Options of a router by name; "none" gives empty options (eval.router_override off).
  std::unique_ptr<AnyOptions> (*router_options)(const std::string& name) = nullptr;
  std::unique_ptr<AnyOptions> (*task_options)(const std::string& name) = nullptr;
  // ConfigError when a router's options cannot work with MoE layers of width `dim` and
  // `experts` experts (k > experts, ...): routers see the layer's shape, not the whole config.
  void (*validate_router)(const std::string& name, const AnyOptions& options, int64_t dim,
                          int64_t experts) = nullptr;
  // Whether the router decides from linear logits (a LogitRouter: model.moe.router_dtype).
  bool (*router_has_logits)(const std::string& name) = nullptr;
};

void install_plugin_catalog(const PluginCatalog& catalog);

// Through the installed catalog; InternalError when the program installed none.
std::unique_ptr<AnyOptions> make_router_options(const std::string& name);
std::unique_ptr<AnyOptions> make_task_options(const std::string& name);
void validate_router_options(const std::string& name, const AnyOptions& options, int64_t dim,
                             int64_t experts);
bool router_has_logits(const std::string& name);

}  // namespace moelab
