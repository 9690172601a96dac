// The explicit list of routers (routers/registry.cpp). No static self-registration:
// adding a router means adding one line there.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct RouterEntry {
  const char* name;
  const char* summary;
  std::unique_ptr<AnyOptions> (*make_options)();
  std::shared_ptr<Router> (*make)(const AnyOptions& options, const RouterShape& shape);
  // ConfigError when the options cannot work with layers of this shape (k > experts, ...).
  void (*validate)(const AnyOptions& options, const RouterShape& shape);
  bool logit_router;  // a LogitRouter: decides from linear logits
};

const std::vector<RouterEntry>& router_registry();
const RouterEntry& find_router(const std::string& name);  // ConfigError listing known names

// The router shape of block `block` of `model`: width, FFN plus null experts, the run's seed
// and model.moe.router_dtype.
RouterShape router_shape(const ModelConfig& model, int64_t seed, int64_t block);
// Builds the router named in the config for one MoE layer.
std::shared_ptr<Router> make_router(const PluginChoice& choice, const RouterShape& shape);
// The config layer's catalog entries (installed by harness/run/plugins.h): options by name
// ("none": empty options) and the router's check against the MoE layer's shape.
std::unique_ptr<AnyOptions> router_options_by_name(const std::string& name);
void check_router_options(const std::string& name, const AnyOptions& options, int64_t dim,
                          int64_t experts);
bool router_decides_from_logits(const std::string& name);

}  // namespace moelab
